//! The guest's whole root filesystem, as an initramfs: busybox, the tracer, the example
//! server and client, the libraries they load, and an `/init` that runs the test and powers
//! off.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{cpio::Archive, kernels::unpack_package};
use crate::ebpf_toolchain::cache_dir;

/// Where the test's programs go in the guest.
const PROGRAMS: &str = "/opt";
/// nghttp2's server and client (Debian's), on the system's `libssl`: HTTP/2 over TLS in the
/// guest, so that the TLS uprobes are loaded and run on its kernel too. At their own paths.
const NGHTTPD: &str = "/usr/sbin/nghttpd";
const NGHTTP: &str = "/usr/bin/nghttp";

/// Markers between which the guest prints each part of its result on the console.
pub mod marker {
    pub const KERNEL: &str = "@@vm-test kernel ";
    pub const TRACER_EXIT: &str = "@@vm-test tracer-exit ";
    pub const CLIENT: &str = "@@vm-test client";
    pub const SPANS: &str = "@@vm-test spans";
    pub const STATS: &str = "@@vm-test stats";
    pub const STDERR: &str = "@@vm-test stderr";
    pub const CAPTURE: &str = "@@vm-test capture";
    pub const TLS_EXIT: &str = "@@vm-test tls-exit ";
    pub const TLS_STATS: &str = "@@vm-test tls-stats";
    pub const END: &str = "@@vm-test end";
}

/// The integration tests of the capture layer run in the guest (tests/capture.rs): each
/// stream's bytes, as captured, against what the workload process sent, byte for byte.
pub const CAPTURE_TESTS: [&str; 2] = [
    "tcp_ipv4_streams_are_byte_exact",
    "http2_data_payload_is_skipped_exactly",
];

/// What `/init` does: mount what the tracer needs, start the example server, run the example
/// client under the tracer, run the capture tests, print everything between markers, power
/// off.
fn init_script(capture_tests: &Path) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs nodev /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
ip link set lo up
echo "{kernel}$(uname -r)"
{programs}/echo-server 127.0.0.1:0 > /tmp/server.out &
for i in 1 2 3 4 5 6 7 8 9 10; do grep -q listening /tmp/server.out && break; sleep 1; done
address=$(sed -n 's/^listening //p' /tmp/server.out)
{programs}/tracer --output json --output-file /tmp/spans.jsonl --stats-json /tmp/stats.json -- {programs}/echo-client --target "http://$address" > /tmp/client.out 2> /tmp/tracer.err
echo "{exit}$?"
echo "{client}"; cat /tmp/client.out
echo "{spans}"; cat /tmp/spans.jsonl
echo "{stats}"; cat /tmp/stats.json; echo
echo "{stderr}"; cat /tmp/tracer.err
echo "{capture}"
{capture_tests} {capture_filters} --test-threads=1 2>&1
mkdir -p /srv; echo hello > /srv/index.html
{nghttpd} -d /srv 8443 {programs}/key.pem {programs}/cert.pem > /dev/null 2>&1 &
sleep 2
{programs}/tracer --output json --output-file /tmp/tls-spans.jsonl --stats-json /tmp/tls-stats.json -- {nghttp} -n https://127.0.0.1:8443/index.html > /tmp/tls.out 2>&1
echo "{tls_exit}$?"
echo "{tls_stats}"; cat /tmp/tls-stats.json; echo
echo "{end}"
poweroff -f
"#,
        capture = marker::CAPTURE,
        capture_tests = capture_tests.display(),
        capture_filters = CAPTURE_TESTS.join(" "),
        nghttpd = NGHTTPD,
        nghttp = NGHTTP,
        tls_exit = marker::TLS_EXIT,
        tls_stats = marker::TLS_STATS,
        kernel = marker::KERNEL,
        exit = marker::TRACER_EXIT,
        client = marker::CLIENT,
        spans = marker::SPANS,
        stats = marker::STATS,
        stderr = marker::STDERR,
        end = marker::END,
        programs = PROGRAMS,
    )
}

/// Builds the initramfs from the release binaries in `release`; returns its path.
pub fn build(release: &Path) -> Result<PathBuf> {
    let mut archive = Archive::default();
    for directory in ["/proc", "/sys", "/dev", "/tmp", "/bin", "/sbin", "/usr/bin"] {
        archive.directory(directory);
    }
    archive.file("/bin/busybox", 0o755, &fs::read(busybox()?)?);
    let capture_tests = capture_tests_binary()?;
    archive.file("/init", 0o755, init_script(&capture_tests).as_bytes());
    let mut libraries = Vec::new();
    // At their own paths: the tests find the workload where they were built to.
    let workload = release.join("socket-workload");
    for program in [&capture_tests, &workload] {
        let path = program.to_str().context("a program's path is not UTF-8")?;
        archive.file(path, 0o755, &fs::read(program)?);
        for library in shared_libraries(program)? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    for program in ["tracer", "echo-server", "echo-client"] {
        let path = release.join(program);
        archive.file(
            &format!("{PROGRAMS}/{program}"),
            0o755,
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
        for library in shared_libraries(&path)? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    for program in [NGHTTPD, NGHTTP] {
        archive.file(
            program,
            0o755,
            &fs::read(program).with_context(|| format!("reading {program}"))?,
        );
        for library in shared_libraries(Path::new(program))? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    let (cert, key) = crate::certificate::self_signed(&cache_dir().join("vm/tls"))?;
    archive.file(&format!("{PROGRAMS}/cert.pem"), 0o644, &fs::read(cert)?);
    archive.file(&format!("{PROGRAMS}/key.pem"), 0o600, &fs::read(key)?);
    for library in &libraries {
        let data = fs::read(library).with_context(|| format!("reading {library}"))?;
        archive.file(library, 0o755, &data);
    }
    let path = cache_dir().join("vm/initramfs.cpio");
    fs::create_dir_all(path.parent().expect("in the cache"))?;
    fs::write(&path, archive.finish())?;
    Ok(path)
}

/// The capture tests' executable (release), built if needed.
fn capture_tests_binary() -> Result<PathBuf> {
    let output = Command::new(env!("CARGO"))
        .args([
            "test",
            "--release",
            "-p",
            "integration-tests",
            "--test",
            "capture",
        ])
        .args(["--no-run", "--message-format=json"])
        .current_dir(crate::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the capture tests")?;
    if !output.status.success() {
        bail!("building the capture tests failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|message| message["target"]["name"] == "capture" && message["executable"].is_string())
        .and_then(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo named no executable for the capture tests")
}

/// The shared libraries `program` loads, by the paths `ldd` resolves them to.
fn shared_libraries(program: &Path) -> Result<Vec<String>> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd")?;
    if !output.status.success() {
        bail!("ldd {} failed: {output:?}", program.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-... (0x...)"
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            // Kept under the name the program asks for, with the real file's bytes.
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect())
}

/// busybox, statically linked (Debian's `busybox-static`), downloaded once.
fn busybox() -> Result<PathBuf> {
    let directory = cache_dir().join("vm/busybox");
    let busybox = directory.join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    crate::install::announce(
        "busybox-static",
        "Debian's archive with apt-get download",
        "for the root filesystem of `cargo xtask vm-test`'s guests",
    );
    let unpacked = unpack_package(None, "busybox-static", &directory)?;
    fs::rename(unpacked.join("bin/busybox"), &busybox)?;
    let _ = fs::remove_dir_all(&unpacked);
    Ok(busybox)
}
