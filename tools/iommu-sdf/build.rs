//! For the tests: generate the policy of `tests/sdf/ok.xml` with this crate's own
//! generator, so a test can `include!` it and the compiler checks that generated policies
//! type-check against the service core. The generator's layers below it (problem, model,
//! parse, plumbing, policy) are all it includes: imports run one way.

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

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let src = format!("{dir}/tests/sdf/ok.xml");
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=src");
    let text = std::fs::read_to_string(&src).unwrap();
    let (sys, _) = parse::parse(&text);
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{out}/ok_policy.rs"), generate::policy_rust(&sys, "tests/sdf/ok.xml")).unwrap();
}
