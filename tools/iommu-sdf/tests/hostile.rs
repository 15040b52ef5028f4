#[test]
fn show() {
    println!("{}", iommu_sdf::gen::description(7, 3, 4, 3));
}
