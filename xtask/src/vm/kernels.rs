//! The kernels of the matrix, from Debian's archive: each a cloud kernel package (they have
//! BTF), downloaded with apt once and unpacked into the project's cache.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::ebpf_toolchain::cache_dir;

/// A kernel of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// How `--kernel` names it.
    pub label: &'static str,
    /// The metapackage that depends on the newest kernel of the series.
    metapackage: &'static str,
    /// A Debian suite of its own to take it from (through a private apt configuration), or
    /// `None` for the suites this machine's apt already has.
    suite: Option<&'static str>,
}

/// Every kernel `cargo xtask vm-test all` boots.
pub const MATRIX: [Kernel; 3] = [
    Kernel {
        label: "5.10",
        metapackage: "linux-image-cloud-amd64",
        suite: Some("bullseye"),
    },
    Kernel {
        label: "6.1",
        metapackage: "linux-image-cloud-amd64",
        suite: None,
    },
    Kernel {
        label: "6.12",
        metapackage: "linux-image-6.12-cloud-amd64",
        suite: None,
    },
];

impl Kernel {
    /// The kernel image (`vmlinuz`), downloaded and unpacked if needed.
    pub fn image(&self) -> Result<PathBuf> {
        let directory = cache_dir().join("vm/kernels").join(self.label);
        let image = directory.join("vmlinuz");
        if image.is_file() {
            return Ok(image);
        }
        let apt = Apt::for_suite(self.suite)?;
        let package = apt.newest_dependency(self.metapackage)?;
        crate::install::announce(
            &format!("the kernel package {package} into {}", directory.display()),
            "Debian's archive with apt-get download",
            "for the kernel matrix of `cargo xtask vm-test`",
        );
        let unpacked = apt.unpack(&package, &directory)?;
        let boot = unpacked.join("boot");
        let found = fs::read_dir(&boot)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("vmlinuz-"))
            })
            .with_context(|| format!("no vmlinuz in {}", boot.display()))?;
        fs::rename(&found, &image)?;
        let _ = fs::remove_dir_all(&unpacked);
        Ok(image)
    }
}

/// Downloads Debian's `package` (from `suite`, or this machine's suites) and unpacks it into
/// `directory/unpacked`, which it returns.
pub fn unpack_package(suite: Option<&str>, package: &str, directory: &Path) -> Result<PathBuf> {
    Apt::for_suite(suite)?.unpack(package, directory)
}

/// apt, with this machine's configuration or with a private one for another suite.
struct Apt {
    options: Vec<String>,
}

impl Apt {
    fn for_suite(suite: Option<&str>) -> Result<Apt> {
        let Some(suite) = suite else {
            return Ok(Apt {
                options: Vec::new(),
            });
        };
        // Kept to the project's cache: the machine's own apt configuration is not touched.
        let state = cache_dir().join("vm/apt").join(suite);
        fs::create_dir_all(state.join("lists/partial"))?;
        let sources = state.join("sources.list");
        fs::write(
            &sources,
            format!("deb http://deb.debian.org/debian {suite} main\n"),
        )?;
        let apt = Apt {
            options: vec![
                format!("Dir::Etc::sourcelist={}", sources.display()),
                "Dir::Etc::sourceparts=-".to_owned(),
                format!("Dir::State::Lists={}", state.join("lists").display()),
            ],
        };
        crate::run(apt.command("apt-get").args(["update", "-q"]))
            .with_context(|| format!("apt-get update for {suite}"))?;
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for option in &self.options {
            command.args(["-o", option]);
        }
        command
    }

    /// The kernel image package `metapackage` depends on.
    fn newest_dependency(&self, metapackage: &str) -> Result<String> {
        let output = self
            .command("apt-cache")
            .args(["depends", metapackage])
            .output()
            .context("running apt-cache")?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("Depends: "))
            .map(str::trim)
            .find(|name| name.starts_with("linux-image-") && name.ends_with("-cloud-amd64"))
            .map(str::to_owned)
            .with_context(|| format!("{metapackage} depends on no kernel image: {text}"))
    }

    /// Downloads `package` and unpacks it into `directory/unpacked`, which it returns.
    fn unpack(&self, package: &str, directory: &Path) -> Result<PathBuf> {
        fs::create_dir_all(directory)?;
        let deb = self.download(package, directory)?;
        let unpacked = directory.join("unpacked");
        crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))
            .with_context(|| format!("unpacking {package}"))?;
        let _ = fs::remove_file(&deb);
        Ok(unpacked)
    }

    /// Downloads `package` into `directory`; returns the `.deb`.
    fn download(&self, package: &str, directory: &Path) -> Result<PathBuf> {
        crate::run(
            self.command("apt-get")
                .args(["download", "-q", package])
                .current_dir(directory),
        )?;
        let deb = fs::read_dir(directory)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|extension| extension == "deb"));
        match deb {
            Some(deb) => Ok(deb),
            None => bail!("apt-get download {package} left no .deb"),
        }
    }
}
