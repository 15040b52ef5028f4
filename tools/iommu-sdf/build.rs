//! For the tests: generate the policy of `tests/sdf/ok.xml` with this crate's own
//! generator, so a test can `include!` it and the compiler checks that generated policies
//! type-check against the service core. The generator's layers below it (problem, model,
//! board, topology, parse, plumbing, queues, policy) are all it includes: imports run one way.

#[path = "src/board.rs"]
#[allow(dead_code)]
mod board;
#[path = "src/build.rs"]
#[allow(dead_code)]
mod generate;
#[path = "src/model.rs"]
#[allow(dead_code)]
mod model;
#[path = "src/parse.rs"]
#[allow(dead_code)]
mod parse;
#[path = "src/plumbing.rs"]
#[allow(dead_code)]
mod plumbing;
#[path = "src/policy.rs"]
#[allow(dead_code)]
mod policy;
#[path = "src/problem.rs"]
#[allow(dead_code)]
mod problem;
#[path = "src/queues.rs"]
#[allow(dead_code)]
mod queues;
#[path = "src/topology.rs"]
#[allow(dead_code)]
mod topology;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed=src");
    let out = std::env::var("OUT_DIR").unwrap();
    // ok.xml, and ok-pci.xml for the PCI topology's tables.
    for (name, policy) in [("ok", "ok_policy"), ("ok-pci", "ok_pci_policy")] {
        let src = format!("{dir}/tests/sdf/{name}.xml");
        println!("cargo:rerun-if-changed={src}");
        let text = std::fs::read_to_string(&src).unwrap();
        let (mut sys, _) = parse::parse(&text);
        topology::derive_streams(&mut sys, &board::Board::default());
        queues::complete(&mut sys);
        let source = format!("tests/sdf/{name}.xml");
        std::fs::write(format!("{out}/{policy}.rs"), generate::policy_rust(&sys, &source)).unwrap();
    }
}
