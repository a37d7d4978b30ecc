//! `cargo xtask vm-test`: the tracer on other kernels. Each kernel of the matrix boots under
//! qemu (software emulation: no KVM here) with an initramfs holding the tracer and the example
//! server and client; the guest traces the client and prints the client's own account of its
//! calls, the spans and the tracer's report, which are checked here call by call.

mod check;
mod cpio;
mod initramfs;
mod kernels;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use check::{GuestRun, check_run};
use kernels::{Kernel, MATRIX};

/// How long a guest may take, boot to power-off, under software emulation.
const GUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Boots the kernels `kernels` names (labels of the matrix, comma-separated, or `all`).
pub fn run(kernels: &str) -> Result<()> {
    let mut selected = Vec::new();
    for wanted in kernels.split(',').map(str::trim) {
        let found: Vec<Kernel> = MATRIX
            .iter()
            .filter(|kernel| wanted == "all" || kernel.label == wanted)
            .copied()
            .collect();
        if found.is_empty() {
            let labels: Vec<&str> = MATRIX.iter().map(|kernel| kernel.label).collect();
            bail!(
                "no kernel {wanted} in the matrix: {} or all",
                labels.join(", ")
            );
        }
        selected.extend(found);
    }
    if !crate::install::debian_tool(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "to boot the kernels of `cargo xtask vm-test`",
    ) {
        bail!("qemu-system-x86_64 (Debian's qemu-system-x86) is needed and could not be installed");
    }
    for (program, package) in [("nghttpd", "nghttp2-server"), ("nghttp", "nghttp2-client")] {
        if !crate::install::debian_tool(program, package, "for HTTP/2 over TLS in the guests") {
            bail!("{program} (Debian's {package}) is needed and could not be installed");
        }
    }
    let release = crate::example::build()?;
    let initramfs = initramfs::build(&release)?;
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    for kernel in selected {
        let line = match boot(&kernel, &initramfs).and_then(|run| check_run(&run)) {
            Ok(summary) => format!("{:<5} ok    {summary}", kernel.label),
            Err(err) => {
                failed.push(kernel.label);
                format!("{:<5} FAIL  {err:#}", kernel.label)
            }
        };
        eprintln!("xtask: vm-test: {line}");
        lines.push(line);
    }
    println!("vm-test:");
    for line in lines {
        println!("  {line}");
    }
    if !failed.is_empty() {
        bail!("vm-test failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Boots `kernel` with `initramfs` and collects what the guest printed.
fn boot(kernel: &Kernel, initramfs: &Path) -> Result<GuestRun> {
    let image = kernel.image()?;
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-m", "1024", "-smp", "1", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&image)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu")?;
    let stdout = qemu.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut text = Vec::new();
        let _ = std::io::BufReader::new(stdout).read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    loop {
        if qemu.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > GUEST_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            bail!("the guest did not power off within {GUEST_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = reader.join().unwrap_or_default();
    // Kept for a look at what went wrong.
    let saved = crate::ebpf_toolchain::cache_dir().join(format!("vm/console-{}.txt", kernel.label));
    let _ = std::fs::write(&saved, &console);
    Ok(GuestRun {
        console,
        wall: started.elapsed(),
    })
}
