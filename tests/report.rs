//! `infer-eval report` rendered by a real headless Chromium (Debian's
//! chromium package): one run and two runs, the page is self-contained (no
//! script, nothing fetched), the DOM Chromium builds holds the figures, and
//! the screenshot shows them (pixels in the series colours). `verify
//! --report` writes the same page on a mismatch.

mod common;
use common::said;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHROMIUM: &str = "/usr/bin/chromium";

fn ie(root: &Path, args: &[&str]) -> Output {
    common::ie_in(root, args).output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", said(&o));
    said(&o)
}

/// Chromium with the flags this closed network needs and a fresh profile.
fn chromium(profile: &Path) -> Command {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: apt-get install chromium (.ci/run installs it)"
    );
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

struct Rendered {
    dom: String,
    width: u32,
    height: u32,
    /// RGB pixels.
    pixels: Vec<[u8; 3]>,
}

fn render(page: &Path, scratch: &Path) -> Rendered {
    let url = format!("file://{}", page.display());
    let png = scratch.join(format!(
        "{}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let shot = chromium(&scratch.join("profile-shot"))
        .arg("--window-size=1280,2400")
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot.status.success(), "chromium: {}", said(&shot));
    let dump = chromium(&scratch.join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "chromium --dump-dom: {}",
        said(&dump)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "screenshot colour type {:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Rendered {
        dom: String::from_utf8_lossy(&dump.stdout).into_owned(),
        width: info.width,
        height: info.height,
        pixels,
    }
}

/// Pixels within a small distance of `rgb` (the charts' series colours).
fn count_near(r: &Rendered, rgb: [i32; 3]) -> usize {
    r.pixels
        .iter()
        .filter(|p| (0..3).all(|i| (p[i] as i32 - rgb[i]).abs() <= 12))
        .count()
}

const BLUE: [i32; 3] = [31, 119, 180];
const ORANGE: [i32; 3] = [255, 127, 14];

fn check_self_contained(html: &str) {
    for bad in [
        "<script",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(bad),
            "the report must be self-contained: found {bad}"
        );
    }
}

fn run(root: &Path, dir: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "eval",
        "experiment=smoke",
        "run.limit=3",
        "sampling.max_tokens=10",
        "--run-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(ie(root, &args));
    dir.to_path_buf()
}

#[test]
fn reports_render_in_headless_chromium_with_their_figures_in_the_dom_and_the_pixels() {
    let p = common::project();
    let root = p.path();
    let scratch = tempfile::tempdir().unwrap();

    let a = run(root, &root.join("runs/a"), &[]);
    let b = run(root, &root.join("runs/b"), &["sampling=sampled"]);

    // One run: report.html in the run folder.
    let out = ok(ie(root, &["report", a.to_str().unwrap()]));
    let one = a.join("report.html");
    assert!(out.contains(&one.display().to_string()), "{out}");
    let html = std::fs::read_to_string(&one).unwrap();
    check_self_contained(&html);
    let r = render(&one, scratch.path());
    assert_eq!((r.width, r.height), (1280, 2400));
    for id in ["accuracy", "ttft", "per-token"] {
        assert!(
            r.dom
                .contains(&format!("<figure class=\"chart\" id=\"{id}\"><svg")),
            "no {id} figure"
        );
    }
    assert!(!r.dom.contains("id=\"divergence\""));
    let blue_one = count_near(&r, BLUE);
    assert!(blue_one > 2000, "run A's colour covers {blue_one} pixels");
    assert!(count_near(&r, ORANGE) < 50, "no run B in a one-run report");
    let white = r
        .pixels
        .iter()
        .filter(|p| p.iter().all(|&c| c > 245))
        .count();
    assert!(
        white < r.pixels.len() * 97 / 100,
        "the page is nearly blank"
    );

    // Two runs: the comparison, the divergence plot, both colours.
    let two = scratch.path().join("ab.html");
    ok(ie(
        root,
        &[
            "report",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            two.to_str().unwrap(),
        ],
    ));
    let html = std::fs::read_to_string(&two).unwrap();
    check_self_contained(&html);
    assert!(html.contains("McNemar exact p") && html.contains("sampling.temperature"));
    let r = render(&two, scratch.path());
    for id in ["accuracy", "ttft", "per-token", "divergence"] {
        assert!(
            r.dom
                .contains(&format!("<figure class=\"chart\" id=\"{id}\"><svg")),
            "no {id} figure"
        );
    }
    assert!(count_near(&r, ORANGE) > 1000, "run B's colour");
    assert!(count_near(&r, BLUE) > 1000, "run A's colour");

    // verify --report: a recorded run whose tokens were altered mismatches
    // and gets the same page, recorded against the re-run.
    let samples = a.join("samples.jsonl");
    let text_s = std::fs::read_to_string(&samples).unwrap();
    let mut lines: Vec<serde_json::Value> = text_s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines
        .iter_mut()
        .find(|s| s["output_ids"].as_array().is_some_and(|v| v.len() > 2))
        .expect("a generated sample");
    first["output_ids"][1] = serde_json::json!(7);
    let id = first["id"].as_str().unwrap().to_string();
    let new: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&samples, new).unwrap();
    // (Forged consistent, so the folder passes its offline check and the
    // re-run is what finds the difference.)
    common::forge::reseal(&a);
    let vr = scratch.path().join("verify.html");
    let v = ie(
        root,
        &[
            "verify",
            a.to_str().unwrap(),
            "--report",
            vr.to_str().unwrap(),
        ],
    );
    assert_eq!(v.status.code(), Some(6), "{}", said(&v));
    let html = std::fs::read_to_string(&vr).unwrap();
    assert!(
        html.contains(&id) && html.contains("output token 1"),
        "the changed sample is listed"
    );
    let r = render(&vr, scratch.path());
    assert!(r.dom.contains("id=\"divergence\""));
}
