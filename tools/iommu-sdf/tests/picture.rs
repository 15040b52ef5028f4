//! The picture `report --svg` draws, judged from its own geometry as a reader would:
//! no two labels overlap, every label fits in its box, there is a legend, and a GRANT
//! path is drawn unlike a PD's own capability. (`tests/render-svg.sh`, in `make
//! test-long`, renders it with headless Chromium.)
use std::fs;
use std::path::Path;

use iommu_sdf::picture::CHAR_W;

fn sdf(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name)).unwrap()
}

fn attr(tag: &str, name: &str) -> Option<f64> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[at..].split('"').next()?.parse().ok()
}

/// Each `<text>`'s box (x0, y0, x1, y1) and content, a 12px font's ascent above its
/// baseline and descent below, `CHAR_W` per character.
fn labels(svg: &str) -> Vec<((f64, f64, f64, f64), String)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let (tag, rest) = t.split_once('>')?;
            let content = rest
                .split("</text>")
                .next()?
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"");
            let (x, y) = (attr(tag, "x")?, attr(tag, "y")?);
            let w = (content.chars().count() * CHAR_W) as f64;
            Some(((x, y - 10.0, x + w, y + 3.0), content))
        })
        .collect()
}

fn rects(svg: &str) -> Vec<(f64, f64, f64, f64)> {
    svg.split("<rect")
        .skip(1)
        .filter_map(|t| {
            let tag = t.split('>').next()?;
            let (x, y, w, h) = (attr(tag, "x")?, attr(tag, "y")?, attr(tag, "width")?, attr(tag, "height")?);
            Some((x, y, x + w, y + h))
        })
        .collect()
}

fn overlap(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn pictures() -> Vec<(&'static str, String)> {
    ["ok.xml", "ok-vm.xml", "ok-children.xml"]
        .into_iter()
        .map(|f| (f, sdf(f)))
        .chain([(
            "system.xml",
            fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap(),
        )])
        .map(|(name, text)| {
            let (sys, problems) = iommu_sdf::check_text(&text);
            assert!(problems.is_empty(), "{name}: {problems:#?}");
            (name, iommu_sdf::report::svg(&sys))
        })
        .collect()
}

#[test]
fn no_two_labels_overlap_and_each_fits_its_box() {
    for (name, svg) in pictures() {
        let labels = labels(&svg);
        assert!(labels.len() > 10, "{name}: {} labels", labels.len());
        for (i, (a, ta)) in labels.iter().enumerate() {
            for (b, tb) in &labels[i + 1..] {
                assert!(!overlap(*a, *b), "{name}: `{ta}` {a:?} overlaps `{tb}` {b:?}");
            }
        }
        // A label that starts inside a box ends inside it.
        let boxes = rects(&svg);
        for (l, t) in &labels {
            if let Some(r) =
                boxes.iter().find(|r| r.0 <= l.0 && l.0 < r.2 && r.1 <= l.1 && l.1 < r.3 && r.2 - r.0 < 2000.0)
            {
                assert!(l.2 <= r.2 && l.3 <= r.3, "{name}: `{t}` {l:?} leaves its box {r:?}");
            }
        }
    }
}

#[test]
fn a_legend_explains_the_styles_and_grant_is_drawn_unlike_a_pds_own_capability() {
    for (name, svg) in pictures() {
        assert!(svg.contains(">Legend</text>"), "{name}");
        assert!(svg.contains("GRANT"), "{name}: the legend names GRANT");
    }
    let (_, svg) = pictures().into_iter().find(|(n, _)| *n == "system.xml").unwrap();
    let edges: Vec<&str> = svg.lines().filter(|l| l.starts_with("<line") && l.contains("marker-end")).collect();
    let grant: Vec<&&str> = edges.iter().filter(|l| l.contains("#d95f02")).collect();
    let own: Vec<&&str> = edges.iter().filter(|l| l.contains("#1b1b1b")).collect();
    // system.xml: edu_driver may lend edu_buffers to blk_driver, c_edu_driver c_buffers
    // to edu_driver; four devices hold a capability of their own.
    assert_eq!((grant.len(), own.len()), (2, 4), "{edges:#?}");
    assert!(
        grant.iter().all(|l| l.contains("stroke-dasharray")) && own.iter().all(|l| !l.contains("stroke-dasharray"))
    );
    // Each range is shown, in its region's box.
    assert!(svg.contains("virtio_blk rw +0x0..0x3000: GRANT of edu_buffers by edu_driver"), "{svg}");
}

/// The order drawn crosses no more edges than the description's own order (devices in
/// file order, regions by name), and in system.xml fewer.
#[test]
fn the_order_keeps_edges_from_crossing() {
    use iommu_sdf::picture::{crossings, order, Order};
    for (name, text) in [
        ("ok.xml", sdf("ok.xml")),
        ("ok-vm.xml", sdf("ok-vm.xml")),
        ("ok-children.xml", sdf("ok-children.xml")),
        ("system.xml", fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap()),
    ] {
        let (sys, _) = iommu_sdf::check_text(&text);
        let reach = iommu_sdf::report::reachability(&sys);
        let drawn = order(&sys, &reach);
        let mut regions: Vec<&str> = reach.iter().map(|r| r.region.as_str()).collect();
        regions.sort();
        regions.dedup();
        let plain = Order { owners: drawn.owners.clone(), devices: (0..sys.io_spaces.len()).collect(), regions };
        let (n, before) = (crossings(&sys, &reach, &drawn), crossings(&sys, &reach, &plain));
        eprintln!("{name}: {n} crossings drawn, {before} in the description's order");
        assert!(n <= before, "{name}: {n} > {before}");
        if name == "system.xml" {
            assert!(n < before, "{name}: {n}, {before}");
        }
    }
}
