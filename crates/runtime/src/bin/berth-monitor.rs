//! `berth-monitor`: the long-lived half of a container's shim, exec'd by `berth-shim serve`
//! once the container exists; see `berth_runtime::shim::monitor`.

fn main() {
    std::process::exit(berth_runtime::shim::monitor::main(
        std::env::args_os().collect(),
    ));
}
