//! The container image: the Dockerfile pins its bases by digest, builds
//! with --locked and documents the image-identity variables; a run records
//! INFER_EVAL_IMAGE / INFER_EVAL_IMAGE_ID and `diff` shows a change of
//! image; and the image, built here on a local Debian base by
//! scripts/container-local.sh, gives the same bits inside as outside
//! (skipped with a printed reason where podman or mmdebstrap is missing;
//! under CI, which installs them, that fails).

mod common;
use common::said;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_dockerfile_pins_its_bases_builds_locked_and_documents_the_image_variables() {
    let df = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let images: Vec<&str> = df
        .lines()
        .filter_map(|l| l.strip_prefix("ARG ").and_then(|a| a.split_once('=')))
        .filter(|(k, _)| k.ends_with("_IMAGE"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(images.len(), 2, "a toolchain and a runtime base");
    for i in &images {
        let (_, digest) = i
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{i}: not pinned by digest"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{i}"
        );
    }
    assert!(
        images[0].contains("rust:1.95.0"),
        "the toolchain CI builds with"
    );
    for l in df.lines().filter(|l| l.starts_with("FROM ")) {
        assert!(
            l.starts_with("FROM ${") || l.starts_with("FROM scratch "),
            "{l}: every FROM uses a pinned ARG (or is empty)"
        );
    }
    // The local route: the binary's stage is chosen by an argument whose
    // default builds from source.
    assert!(df.contains("ARG BINARY=build") && df.contains("FROM ${BINARY} AS binary"));
    assert!(df.contains("cargo build --release --locked"));
    assert!(df.contains("ENTRYPOINT [\"infer-eval\"]") && df.contains("VOLUME /cache"));
    for v in [
        "INFER_EVAL_IMAGE=",
        "INFER_EVAL_IMAGE_ID=",
        "INFER_EVAL_BUILD_GIT_SHA=",
        "INFER_EVAL_CACHE=/cache",
    ] {
        assert!(df.contains(v), "the Dockerfile sets {v}");
    }
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "target/ stays out of the build context"
    );
}

fn ie(root: &Path, args: &[&str], image: Option<(&str, &str)>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_infer-eval"));
    c.current_dir(root)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("INFER_EVAL_IMAGE")
        .env_remove("INFER_EVAL_IMAGE_ID");
    if let Some((r, id)) = image {
        c.env("INFER_EVAL_IMAGE", r).env("INFER_EVAL_IMAGE_ID", id);
    }
    c.output().unwrap()
}

fn eval(root: &Path, dir: &Path, image: Option<(&str, &str)>) -> serde_json::Value {
    let o = ie(
        root,
        &[
            "eval",
            "experiment=smoke",
            "task=multiple_choice",
            "run.limit=2",
            "--run-dir",
            dir.to_str().unwrap(),
        ],
        image,
    );
    assert!(o.status.success(), "{}", said(&o));
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn the_image_reference_is_recorded_and_diff_shows_a_change_of_image() {
    let p = common::project();
    let root = p.path();
    let pinned = "registry.example/infer-eval@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let id = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let a = root.join("runs/a");
    let m = eval(root, &a, Some((pinned, id)));
    let img = &m["environment"]["image"];
    assert_eq!(img["reference"], pinned);
    assert_eq!(img["id"], id);
    assert_eq!(img["pinned"], true);
    let b = root.join("runs/b");
    let m = eval(root, &b, Some(("registry.example/infer-eval:latest", "")));
    assert_eq!(
        m["environment"]["image"]["pinned"], false,
        "a tag alone is unpinned"
    );
    assert!(m["environment"]["image"]["id"].is_null());
    let c = root.join("runs/c");
    let m = eval(root, &c, None);
    assert!(
        m["environment"]["image"].is_null(),
        "no image outside a container"
    );
    let d = ie(
        root,
        &["diff", a.to_str().unwrap(), b.to_str().unwrap()],
        None,
    );
    assert!(d.status.success(), "{}", said(&d));
    let out = said(&d);
    assert!(
        out.contains("image:") && out.contains(pinned) && out.contains("infer-eval:latest"),
        "{out}"
    );
    // Same outputs: the image is environment, not a cause of other bits.
    assert!(out.contains("(identical)"), "{out}");
    let d = ie(
        root,
        &["diff", a.to_str().unwrap(), c.to_str().unwrap()],
        None,
    );
    assert!(said(&d).contains("image:"), "{}", said(&d));
}

/// A program on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// podman, or docker with a reachable daemon; else why not.
fn builder() -> Result<PathBuf, String> {
    if let Some(p) = which("podman") {
        return Ok(p);
    }
    match which("docker") {
        None => Err("neither podman nor docker is installed".into()),
        Some(d) => {
            let info = Command::new(&d)
                .arg("info")
                .output()
                .map_err(|e| e.to_string())?;
            if info.status.success() {
                Ok(d)
            } else {
                Err(format!(
                    "docker is installed but its daemon does not answer: {}",
                    said(&info).lines().last().unwrap_or("").trim()
                ))
            }
        }
    }
}

/// `scripts/container-local.sh` with this test's binary: the image ID.
fn build_local(b: &Path, tag: &str, extra: &[&str]) -> String {
    let o = Command::new(repo().join("scripts/container-local.sh"))
        .current_dir(repo())
        .args(["--tag", tag, "--binary", env!("CARGO_BIN_EXE_infer-eval")])
        .args(extra)
        .env("BUILDER", b)
        .output()
        .unwrap();
    assert!(o.status.success(), "container-local.sh: {}", said(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or("");
    let id = last
        .strip_prefix(&format!("image {tag} "))
        .unwrap_or_else(|| panic!("no image line in: {}", said(&o)));
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    id.to_string()
}

/// The image built here from a local Debian base (no registry), run with
/// --network=none: the smoke evaluation gives the same run digest and
/// samples inside as outside, the manifest names the image, `verify`
/// outside re-runs the inside folder to MATCH, `diff` shows only the
/// environment, and a second build from nothing gives the same image ID.
#[test]
fn the_image_built_here_gives_the_same_bits_inside_as_outside() {
    const TEST: &str = "the container test (it needs podman with runc, or docker, and mmdebstrap)";
    let b = match builder() {
        Ok(b) => b,
        Err(why) => return common::skip_or_fail(TEST, &why),
    };
    if which("mmdebstrap").is_none() {
        return common::skip_or_fail(TEST, "mmdebstrap is not installed");
    }
    let podman = b.file_name().is_some_and(|n| n == "podman");
    let p = common::project();
    let root = p.path();
    let tag = format!("localhost/infer-eval-test:{}", std::process::id());
    let t0 = std::time::Instant::now();
    let id = build_local(&b, &tag, &[]);
    let built_s = t0.elapsed().as_secs_f64();
    let size = Command::new(&b)
        .args(["image", "inspect", "--format", "{{.Size}}", &tag])
        .output()
        .unwrap();
    eprintln!(
        "image {tag} {id}: built in {built_s:.1} s, {} bytes",
        String::from_utf8_lossy(&size.stdout).trim()
    );
    struct Rmi<'a>(&'a Path, &'a str);
    impl Drop for Rmi<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0).args(["rmi", "-f", self.1]).output();
        }
    }
    let _rmi = Rmi(&b, &tag);

    let args = [
        "eval",
        "experiment=smoke",
        "run.limit=3",
        "sampling.max_tokens=8",
    ];
    let outside = root.join("runs/outside");
    let o = ie(
        root,
        &[&args[..], &["--run-dir", outside.to_str().unwrap()]].concat(),
        None,
    );
    assert!(o.status.success(), "{}", said(&o));

    // Inside: no network, the model files read-only from this machine's
    // cache, the run folder written to a mounted folder.
    let out = root.join("runs/mounted");
    std::fs::create_dir_all(&out).unwrap();
    let models = infer_eval::fetch::cache_dir().join("models");
    let mut run = Command::new(&b);
    run.args(["run", "--rm", "--network=none"]);
    if podman {
        run.args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
    }
    let o = run
        .arg("-v")
        .arg(format!("{}:/cache/models:ro", models.display()))
        .arg("-v")
        .arg(format!("{}:/out", out.display()))
        .args(["-e", &format!("INFER_EVAL_IMAGE={tag}")])
        .args(["-e", &format!("INFER_EVAL_IMAGE_ID={id}")])
        .arg(&tag)
        .args(args)
        .args(["--run-dir", "/out/inside"])
        .output()
        .unwrap();
    assert!(o.status.success(), "inside the container: {}", said(&o));
    let inside = out.join("inside");

    // The same bits: run digest, and every sample's logits and logprobs.
    common::assert_same_run_bits(&outside, &inside);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(inside.join("manifest.json")).unwrap()).unwrap();
    assert!(
        m["model"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/cache/models/"),
        "the model came from the mounted cache: {}",
        m["model"]
    );
    assert_eq!(m["environment"]["image"]["id"], id.as_str());
    assert_eq!(m["environment"]["image"]["reference"], tag.as_str());
    let (digest, _) = common::run_bits(&inside);
    eprintln!(
        "run digest inside {digest}, outside {}",
        common::run_bits(&outside).0
    );

    // verify, outside, re-runs the container's folder.
    let v = ie(root, &["verify", inside.to_str().unwrap()], None);
    assert!(
        v.status.success() && said(&v).contains(&format!("MATCH {digest}")),
        "{}",
        said(&v)
    );
    // diff: the same outputs and config; the environment (the image) differs.
    let d = ie(
        root,
        &["diff", outside.to_str().unwrap(), inside.to_str().unwrap()],
        None,
    );
    let dt = said(&d);
    eprintln!("diff outside inside:\n{dt}");
    assert!(d.status.success(), "{dt}");
    assert!(dt.contains("(identical)"), "{dt}");
    assert!(dt.contains("config: same"), "{dt}");
    assert!(
        dt.contains("outputs: 0 samples differ, 0 only in A, 0 only in B"),
        "{dt}"
    );
    assert!(dt.contains("image:") && dt.contains(&id), "{dt}");

    // A second build from nothing (every layer again, the same base
    // tarball): the same image ID.
    let again = build_local(&b, &tag, &["--no-cache"]);
    assert_eq!(again, id, "a rebuild with --no-cache gave another image ID");
}
