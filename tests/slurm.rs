//! A real single-node Slurm (Debian's slurm-wlm and munge), started here
//! with a minimal slurm.conf on localhost, runs examples/slurm/submit.sh as
//! written: a job array of shards and a merge job with
//! --dependency=afterok. The merged digest must equal the single run's.
//! Skipped, with the reason printed, where the daemons cannot start (not
//! root, Slurm not installed); under CI, which installs Slurm, that fails.

mod common;
use common::said;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    common::skip_or_fail("the Slurm test (it needs root and slurm-wlm + munge)", why);
}

/// Daemons started here, stopped by their process groups.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            unsafe { libc::kill(-(c.id() as i32), libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_millis(500));
        for c in &mut self.0 {
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(f.try_clone().unwrap())
        .stderr(f)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn munge_works() -> bool {
    Command::new("sh")
        .args(["-c", "munge -n | unmunge"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn slurm_conf(dir: &Path) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        "ClusterName=infereval\nSlurmctldHost=localhost\nSlurmUser=root\nSlurmdUser=root\n\
AuthType=auth/munge\nCredType=cred/munge\nStateSaveLocation={d}/ctld\nSlurmdSpoolDir={d}/slurmd\n\
SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
AccountingStorageType=accounting_storage/none\nMpiDefault=none\nSchedulerType=sched/backfill\n\
SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nReturnToService=2\n\
NodeName=localhost CPUs=2 State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
    );
    for sub in ["ctld", "slurmd"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let p = dir.join("slurm.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

fn field(out: &str, key: &str) -> Option<String> {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .map(String::from)
}

#[test]
fn a_slurm_job_array_and_dependent_merge_reach_the_single_run_digest() {
    if unsafe { libc::geteuid() } != 0 {
        return skip("not running as root (slurmd and munged need it)");
    }
    for b in ["slurmctld", "slurmd", "sbatch", "munged"] {
        let found = ["/usr/sbin", "/usr/bin"]
            .iter()
            .any(|d| Path::new(d).join(b).exists());
        if !found {
            return skip(&format!(
                "{b} is not installed (apt-get install slurm-wlm munge)"
            ));
        }
    }
    let p = common::project();
    let root = p.path();
    let state = tempfile::tempdir().unwrap();
    let conf = slurm_conf(state.path());
    let mut daemons = Daemons(Vec::new());
    if !munge_works() {
        std::fs::create_dir_all("/run/munge").unwrap();
        let _ = Command::new("chown")
            .args(["munge:munge", "/run/munge"])
            .status();
        daemons.0.push(spawn(
            Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged", "-F"]),
            &state.path().join("munged.log"),
        ));
        let t0 = Instant::now();
        while !munge_works() {
            if t0.elapsed() > Duration::from_secs(15) {
                return skip(&format!(
                    "munged did not start: {}",
                    std::fs::read_to_string(state.path().join("munged.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let slurm = |cmd: &str| {
        let mut c = Command::new(cmd);
        c.env("SLURM_CONF", &conf);
        c
    };
    daemons.0.push(spawn(
        slurm("slurmctld").arg("-D"),
        &state.path().join("ctld.out"),
    ));
    daemons.0.push(spawn(
        slurm("slurmd").args(["-D", "-N", "localhost"]),
        &state.path().join("slurmd.out"),
    ));
    let t0 = Instant::now();
    loop {
        let o = slurm("sinfo").args(["-h", "-o", "%T"]).output().unwrap();
        if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let log = |f: &str| std::fs::read_to_string(state.path().join(f)).unwrap_or_default();
            return skip(&format!(
                "the node did not become idle in 60 s: sinfo {}; slurmctld: {}; slurmd: {}",
                said(&o).trim(),
                log("ctld.out") + &log("slurmctld.log"),
                log("slurmd.out") + &log("slurmd.log")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("slurm up in {:.1} s", t0.elapsed().as_secs_f64());

    // The single-machine run to compare with.
    let overrides = ["experiment=smoke", "run.limit=3", "sampling.max_tokens=6"];
    let single = root.join("single");
    let o = Command::new(env!("CARGO_BIN_EXE_infer-eval"))
        .current_dir(root)
        .arg("eval")
        .args(overrides)
        .arg("--run-dir")
        .arg(&single)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", said(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(single.join("manifest.json")).unwrap()).unwrap();
    let want = m["run_digest"].as_str().unwrap().to_string();

    // The recipe as written.
    let submit = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/submit.sh");
    let work = root.join("shards");
    let o = slurm("bash")
        .arg(&submit)
        .args(overrides)
        .current_dir(root)
        .env("SHARDS", "3")
        .env("WORK", &work)
        .env("INFER_EVAL", env!("CARGO_BIN_EXE_infer-eval"))
        .env("HF_HUB_OFFLINE", "1")
        .env("INFER_EVAL_CACHE", infer_eval::fetch::cache_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "submit.sh: {}", said(&o));
    let out = said(&o);
    let merge_id = out
        .lines()
        .find_map(|l| l.strip_prefix("merge "))
        .unwrap_or_else(|| panic!("no merge job id in {out}"))
        .trim()
        .to_string();
    let t0 = Instant::now();
    let state_of = |id: &str| {
        let o = slurm("scontrol")
            .args(["show", "job", id])
            .output()
            .unwrap();
        (field(&said(&o), "JobState"), said(&o))
    };
    loop {
        let (st, all) = state_of(&merge_id);
        match st.as_deref() {
            Some("COMPLETED") => break,
            Some("FAILED") | Some("CANCELLED") | Some("TIMEOUT") | Some("NODE_FAIL") => {
                let logs: String = std::fs::read_dir(root)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect();
                panic!("merge job {merge_id}: {all}\njob logs:\n{logs}");
            }
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "merge job not done in 600 s: {all}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("array + merge done in {:.1} s", t0.elapsed().as_secs_f64());
    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("merged/manifest.json")).unwrap()).unwrap();
    assert_eq!(merged["run_digest"], want.as_str());
    // The run digest covers token ids; the logits and log-probabilities too.
    common::assert_same_run_bits(&single, &work.join("merged"));
    let shards = merged["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().all(|s| s["source"] == "slurm"), "{shards:?}");
}
