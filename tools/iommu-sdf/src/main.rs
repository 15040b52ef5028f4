//! `iommu-sdf check FILE`: check a system description; exit 1 with a message per problem.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: iommu-sdf check FILE");
        return ExitCode::from(2);
    };
    if cmd != "check" {
        eprintln!("iommu-sdf: unknown command `{cmd}` (this version has: check)");
        return ExitCode::from(2);
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("iommu-sdf: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let (sys, problems) = iommu_sdf::check_text(&text);
    for p in &problems {
        println!("{file}:{p}");
    }
    if !problems.is_empty() {
        println!("{file}: {} problem(s)", problems.len());
        return ExitCode::from(1);
    }
    println!(
        "{file}: ok: {} protection domains, {} IO address spaces, {} DMA capabilities; every other stream aborts",
        sys.pds.len(),
        sys.io_spaces.len(),
        sys.caps.len()
    );
    ExitCode::SUCCESS
}
