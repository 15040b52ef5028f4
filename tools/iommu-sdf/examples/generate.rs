//! `generate SEED`: print a random valid description, as the property tests make them
//! (`iommu_sdf::gen`), for tools outside the test suite (images/accepted-descriptions.sh
//! hands them to the Microkit tool).

fn main() {
    let seed: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let pds = 1 + (seed % 5) as usize;
    print!("{}", iommu_sdf::gen::description(seed, pds, 2 + pds, 1 + pds));
}
