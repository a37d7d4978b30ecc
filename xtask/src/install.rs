//! Everything `cargo xtask` installs on a machine goes through here, and says what it installs,
//! from where and why, before it does.

use std::process::Command;

/// Tells the user what is about to be installed.
pub fn announce(what: &str, from: &str, why: &str) {
    eprintln!("xtask: installing {what} from {from}, {why} (first use only)");
}

/// Whether `program` runs (`program --version`, or `openssl version`), after installing the
/// Debian `package` that provides it if it did not; `why` says what needs it.
pub fn debian_tool(program: &str, package: &str, why: &str) -> bool {
    let present = || {
        Command::new(program)
            .arg(if program == "openssl" {
                "version"
            } else {
                "--version"
            })
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if present() {
        return true;
    }
    announce(
        &format!("{program} (package {package})"),
        "Debian's archive with apt-get",
        why,
    );
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .status();
    present()
}

/// Whether the Debian `packages` are installed, after installing those that were not; `why`
/// says what needs them.
pub fn debian_packages(packages: &[&str], why: &str) -> bool {
    let installed = |package: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Status}", package])
            .output()
            .is_ok_and(|output| output.stdout.ends_with(b"install ok installed"))
    };
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return true;
    }
    announce(&missing.join(", "), "Debian's archive with apt-get", why);
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    missing.iter().all(|package| installed(package))
}
