//! `generate SEED`: print a random valid description, as the property tests make them
//! (`iommu_sdf::gen`), for tools outside the test suite (images/accepted-descriptions.sh
//! hands them to the Microkit tool). `generate --hostile SEED`: one bent where the
//! report's arithmetic meets the Microkit tool's placement (`gen::hostile`), which
//! images/reach-differential.sh runs both tools on.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hostile = args.iter().any(|a| a == "--hostile");
    let seed: u64 = args.iter().find_map(|s| s.parse().ok()).unwrap_or(1);
    if hostile {
        print!("{}", iommu_sdf::gen::hostile(seed));
        return;
    }
    let pds = 1 + (seed % 5) as usize;
    print!("{}", iommu_sdf::gen::description(seed, pds, 2 + pds, 1 + pds));
}
