//! The object built for kernels without `bpf_loop` runs its loops' steps as global functions
//! (see `src/steps.rs`); bpf-linker makes every function but the programs static unless told.

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_BOUNDED_LOOPS");
    if std::env::var_os("CARGO_FEATURE_BOUNDED_LOOPS").is_some() {
        println!(
            "cargo:rustc-link-arg-bins=--export=walk_step_global,copy_step_global,\
             frames_step_global,runs_step_global,forget_step_global"
        );
    }
}
