//! `iommu-sdf check FILE`: check a system description; exit 1 with a message per problem.
//! `iommu-sdf build FILE --out DIR`: check it, then write `DIR/<name>.system` for the
//! Microkit tool and `DIR/iommu_policy.rs` for the IOMMU PD.
//! `iommu-sdf report FILE`: check it, print the reachability report (Markdown) and write
//! the picture beside the file (`FILE.reach.svg`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: iommu-sdf check FILE | iommu-sdf build FILE --out DIR | iommu-sdf report FILE");
        return ExitCode::from(2);
    };
    let out_dir = match (cmd.as_str(), args.get(3).map(String::as_str), args.get(4)) {
        ("check", None, _) => None,
        ("build", Some("--out"), Some(dir)) => Some(dir.clone()),
        ("report", None, _) => None,
        _ => {
            eprintln!("usage: iommu-sdf check FILE | iommu-sdf build FILE --out DIR | iommu-sdf report FILE");
            return ExitCode::from(2);
        }
    };
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
    println!("{file}: ok: {}", iommu_sdf::summary(&sys));
    if cmd == "report" {
        let md = iommu_sdf::report::markdown(&sys, file);
        let svg_path = std::path::Path::new(file).with_extension("reach.svg");
        if let Err(e) = std::fs::write(&svg_path, iommu_sdf::report::svg(&sys)) {
            eprintln!("iommu-sdf: cannot write {}: {e}", svg_path.display());
            return ExitCode::from(2);
        }
        println!("\n{md}\n(picture: {})", svg_path.display());
        return ExitCode::SUCCESS;
    }
    let Some(dir) = out_dir else { return ExitCode::SUCCESS };
    let stem = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("system");
    let system = match iommu_sdf::build::microkit_system(&text, &sys) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("iommu-sdf: {file}: {e}");
            return ExitCode::from(1);
        }
    };
    let policy = iommu_sdf::build::policy_rust(&sys, file);
    let dir = std::path::Path::new(&dir);
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(dir.join(format!("{stem}.system")), system))
        .and_then(|_| std::fs::write(dir.join("iommu_policy.rs"), policy));
    if let Err(e) = written {
        eprintln!("iommu-sdf: cannot write to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    println!("{file}: wrote {}/{stem}.system and {}/iommu_policy.rs", dir.display(), dir.display());
    ExitCode::SUCCESS
}
