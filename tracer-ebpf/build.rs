//! The programs' loops run their steps as global functions (see `src/steps.rs`); bpf-linker
//! makes every function but the programs static unless told to export it.

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_BOUNDED_LOOPS");
    let mut steps = vec![
        "walk_step_global",
        "copy_step_global",
        "frames_step_global",
        "runs_step_global",
    ];
    // Forgetting a range of descriptors: by a walk over the socket table where the kernel has
    // one, else descriptor by descriptor (`src/fd_range.rs`).
    if std::env::var_os("CARGO_FEATURE_BOUNDED_LOOPS").is_some() {
        steps.push("forget_step_global");
    } else {
        steps.push("forget_collected_global");
    }
    println!("cargo:rustc-link-arg-bins=--export={}", steps.join(","));
}
