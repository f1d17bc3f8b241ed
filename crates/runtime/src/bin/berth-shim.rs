//! `berth-shim`: the per-container supervisor; see `berth_runtime::shim`.

fn main() {
    std::process::exit(berth_runtime::shim::main(std::env::args_os().collect()));
}
