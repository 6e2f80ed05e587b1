//! The Debian package, as `scripts/package --debug` builds it from the debug build (nothing is
//! built in release): its files and their modes, its conffiles, its control fields, its
//! maintainer scripts (the unit is installed, not enabled, not started), and what it installs
//! working (the binary runs, the unit starts the binary it installs). scripts/package installs
//! its pinned cargo-deb when missing (scripts/test does that before the tests run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `dpkg-deb -c`: path → permissions, for regular files.
fn contents(deb: &Path) -> BTreeMap<String, String> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let mode = f.next().unwrap_or_default().to_string();
            let path = f
                .last()
                .unwrap_or_default()
                .trim_start_matches('.')
                .to_string();
            (path, mode)
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

#[test]
fn the_debian_package_installs_the_controller_as_a_service_that_is_not_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(repo().join("scripts/package"))
        .current_dir(repo())
        .args(["--debug", "--out"])
        .arg(dir.path()));
    let deb = PathBuf::from(out.lines().last().expect("the .deb's path").trim());
    assert!(
        deb.starts_with(dir.path()) && deb.extension().is_some_and(|e| e == "deb"),
        "{out}"
    );

    // Control fields.
    assert_eq!(field(&deb, "Package"), "mrgc-autoscaler");
    assert_eq!(
        field(&deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field(&deb, "Section"), "admin");
    let depends = field(&deb, "Depends");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    assert!(
        field(&deb, "Description").starts_with("Capacity controller of a multi-region GPU"),
        "{}",
        field(&deb, "Description")
    );
    assert!(!field(&deb, "Maintainer").is_empty());

    // Files and modes.
    let files = contents(&deb);
    let mode = |p: &str| {
        files
            .get(p)
            .unwrap_or_else(|| panic!("{p} is not in the package: {:#?}", files.keys()))
            .as_str()
    };
    assert_eq!(mode("/usr/bin/mrgc-autoscaler"), "-rwxr-xr-x");
    for p in [
        "/usr/lib/systemd/system/mrgc-autoscaler.service",
        "/etc/mrgc-autoscaler/env",
        "/usr/share/man/man1/mrgc-autoscaler.1.gz",
        "/usr/share/man/man1/mrgc-autoscaler-run.1.gz",
        "/usr/share/man/man1/mrgc-autoscaler-history.1.gz",
        "/usr/share/bash-completion/completions/mrgc-autoscaler",
        "/usr/share/zsh/vendor-completions/_mrgc-autoscaler",
        "/usr/share/fish/vendor_completions.d/mrgc-autoscaler.fish",
        "/usr/share/doc/mrgc-autoscaler/RUNBOOK.md",
        "/usr/share/doc/mrgc-autoscaler/copyright",
        "/usr/share/doc/mrgc-autoscaler/docs/install.md",
    ] {
        assert_eq!(mode(p), "-rw-r--r--", "{p}");
    }
    let mut policies: Vec<String> = std::fs::read_dir(repo().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .map(|n| format!("/etc/mrgc-autoscaler/policies/{n}"))
        .collect();
    policies.sort();
    assert!(!policies.is_empty());
    for p in &policies {
        assert_eq!(mode(p), "-rw-r--r--", "{p}");
    }

    // The control area: conffiles, and maintainer scripts that do not enable or start it.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles: Vec<String> = std::fs::read_to_string(control.join("conffiles"))
        .expect("a conffiles list")
        .lines()
        .map(str::to_string)
        .collect();
    let mut want = vec!["/etc/mrgc-autoscaler/env".to_string()];
    want.extend(policies.iter().cloned());
    let mut got = conffiles.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "conffiles");
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("a postinst");
    assert!(postinst.contains("mrgc-autoscaler.service"), "{postinst}");
    assert!(
        postinst.contains("was-enabled"),
        "the unit is enabled only if it was before:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start")
            && !postinst.contains("deb-systemd-invoke $_dh_action"),
        "installing must not start the service:\n{postinst}"
    );
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap_or_default();
    assert!(
        postrm.contains("mrgc-autoscaler.service"),
        "removal cleans up the unit:\n{postrm}"
    );

    // What it installs: the unit runs the binary the package installs, the settings file is
    // deploy/systemd's, the man page is one, and the binary runs.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/mrgc-autoscaler.service"))
        .unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo().join("deploy/systemd/mrgc-autoscaler.service")).unwrap()
    );
    assert!(unit.contains("ExecStart=/usr/bin/mrgc-autoscaler run --backend aws"));
    assert!(unit.contains("EnvironmentFile=/etc/mrgc-autoscaler/env"));
    assert_eq!(
        std::fs::read(root.join("etc/mrgc-autoscaler/env")).unwrap(),
        std::fs::read(repo().join("deploy/systemd/mrgc-autoscaler.env")).unwrap()
    );
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/mrgc-autoscaler.1.gz")));
    assert!(man.contains(".TH mrgc-autoscaler 1"), "{man}");
    let version = run(Command::new(root.join("usr/bin/mrgc-autoscaler")).arg("--version"));
    assert!(
        version.starts_with(&format!(
            "mrgc-autoscaler {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    let check = run(Command::new(root.join("usr/bin/mrgc-autoscaler"))
        .args(["policy", "check"])
        .arg(root.join("etc/mrgc-autoscaler/policies")));
    assert!(check.contains("pools valid"), "{check}");
}
