//! `report --svg`: the picture of what every device can reach. Driver PDs (left, with
//! their quotas) own devices (middle, with their StreamIDs and IOVA windows), whose
//! edges go to the regions they reach (right), each edge ending at its own line in the
//! region's box, which gives the range, the rights and how it is reached. The styles of
//! the edges (a PD's own capability, a GRANT another PD may make, a static iomap) and
//! the boxes are explained in a legend.
//!
//! Layout, so that a person can read it: every label is inside its box, one line each,
//! and boxes are as wide as their longest line (`CHAR_W` per character, wider than a
//! 12px sans-serif character), so no two labels overlap (`tests/picture.rs` checks it
//! from the SVG's own geometry); devices are grouped under their owners in the PDs'
//! order, and regions ordered by the mean row of the devices that reach them, which
//! keeps edges from crossing where an order can.
use std::fmt::Write as _;

use std::collections::BTreeMap;

use crate::model::System;
use crate::placement::{self, Placed};
use crate::report::{reachability, Reach};

/// Pixels per character allowed for a label (12px sans-serif averages under 7).
pub const CHAR_W: usize = 7;
/// Height of one line of a label.
pub const LINE_H: usize = 16;
const PAD: usize = 8;
const GAP_X: usize = 110;
const GAP_Y: usize = 14;

/// How a device reaches a region, as the picture draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Own,
    Grant,
    Iomap,
}

impl Path {
    fn of(r: &Reach) -> Path {
        if r.source.starts_with("GRANT") {
            Path::Grant
        } else if r.source.starts_with("capability") {
            Path::Own
        } else {
            Path::Iomap
        }
    }

    /// Stroke colour and dash pattern.
    fn style(self) -> (&'static str, &'static str) {
        match self {
            Path::Own => ("#1b1b1b", ""),
            Path::Grant => ("#d95f02", r#" stroke-dasharray="8 4""#),
            Path::Iomap => ("#1f5fbf", r#" stroke-dasharray="2 3""#),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A box: its lines of text, at (x, y), as wide as its longest line.
struct Boxed {
    lines: Vec<String>,
    x: usize,
    y: usize,
    w: usize,
}

impl Boxed {
    fn height(&self) -> usize {
        self.lines.len() * LINE_H + PAD
    }
    /// The vertical middle of line `i`.
    fn line_y(&self, i: usize) -> usize {
        self.y + PAD / 2 + i * LINE_H + LINE_H / 2
    }
    fn draw(&self, o: &mut String, fill: &str) {
        let _ = writeln!(
            o,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}" stroke="black"/>"#,
            self.x,
            self.y,
            self.w,
            self.height()
        );
        for (i, l) in self.lines.iter().enumerate() {
            let weight = if i == 0 { r#" font-weight="bold""# } else { "" };
            let _ =
                writeln!(o, r#"<text x="{}" y="{}"{weight}>{}</text>"#, self.x + PAD / 2, self.line_y(i) + 4, esc(l));
        }
    }
}

fn width(lines: &[String]) -> usize {
    lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) * CHAR_W + PAD
}

/// Stack `items` from `y0`, each column its own width.
fn column(items: Vec<Vec<String>>, x: usize, y0: usize) -> Vec<Boxed> {
    let w = items.iter().map(|l| width(l)).max().unwrap_or(0);
    let mut y = y0;
    items
        .into_iter()
        .map(|lines| {
            let b = Boxed { lines, x, y, w };
            y += b.height() + GAP_Y;
            b
        })
        .collect()
}

fn range(r: &Reach) -> String {
    let rights = match (r.rights.read, r.rights.write) {
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        _ => "-",
    };
    let phys = r.phys.map(|(s, e)| format!(", phys {s:#x}..{e:#x}")).unwrap_or_default();
    format!("{} {rights} +{:#x}..{:#x}{phys}: {}", r.device, r.offset, r.offset + r.len, r.source.replace('`', ""))
}

/// The order of the three columns: owners (PDs), devices (indices into `io_spaces`),
/// regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order<'a> {
    pub owners: Vec<&'a str>,
    pub devices: Vec<usize>,
    pub regions: Vec<&'a str>,
}

fn owner_of(sys: &System, d: usize) -> &str {
    sys.io_spaces[d].owner.as_deref().unwrap_or("(no owner)")
}

/// How many device-to-region edges cross in `o`. Edges from one device fan out from one
/// point and edges into one region end on its lines in device order, so only edges of
/// two devices and two regions in opposite orders cross. (Owner-to-device edges never
/// do: devices are grouped in their owners' order.)
pub fn crossings(sys: &System, reach: &[Reach], o: &Order) -> usize {
    let edges: Vec<(usize, usize)> = reach
        .iter()
        .filter_map(|r| {
            let d = o.devices.iter().position(|&d| sys.io_spaces[d].name == r.device)?;
            Some((d, o.regions.iter().position(|m| *m == r.region)?))
        })
        .collect();
    let mut n = 0;
    for (i, a) in edges.iter().enumerate() {
        for b in &edges[i + 1..] {
            n += usize::from((a.0 < b.0 && a.1 > b.1) || (a.0 > b.0 && a.1 < b.1));
        }
    }
    n
}

/// Mean of `rows` scaled by 1000, or `default` when there are none.
fn mean(rows: impl Iterator<Item = usize>, default: usize) -> usize {
    let (sum, n) = rows.fold((0, 0), |(s, n), r| (s + r, n + 1));
    (sum * 1000).checked_div(n).unwrap_or(default * 1000)
}

/// The columns' order with the fewest crossings found: devices grouped under their
/// owners (PDs in the order of their first device to begin with), then barycentre
/// sweeps (regions by the mean row of the devices reaching them, owners and devices by
/// the mean row of the regions they reach), keeping the best of a few.
pub fn order<'a>(sys: &'a System, reach: &'a [Reach]) -> Order<'a> {
    let mut owners: Vec<&str> = Vec::new();
    for d in 0..sys.io_spaces.len() {
        if !owners.contains(&owner_of(sys, d)) {
            owners.push(owner_of(sys, d));
        }
    }
    let mut devices: Vec<usize> = (0..sys.io_spaces.len()).collect();
    devices.sort_by_key(|&d| owners.iter().position(|o| *o == owner_of(sys, d)));
    let mut regions: Vec<&str> = reach.iter().map(|r| r.region.as_str()).collect();
    regions.sort();
    regions.dedup();
    let mut o = Order { owners, devices, regions };
    let region_rows = |o: &Order, mr: &str| {
        let devices = &o.devices;
        mean(
            reach
                .iter()
                .filter(|r| r.region == mr)
                .filter_map(|r| devices.iter().position(|&d| sys.io_spaces[d].name == r.device)),
            0,
        )
    };
    let device_rows = |o: &Order, d: usize, at: usize| {
        mean(
            reach
                .iter()
                .filter(|r| r.device == sys.io_spaces[d].name)
                .filter_map(|r| o.regions.iter().position(|m| *m == r.region)),
            at,
        )
    };
    let by_regions = |o: &mut Order| {
        let keys: Vec<(usize, &str)> = o.regions.iter().map(|mr| (region_rows(o, mr), *mr)).collect();
        let mut keyed = keys;
        keyed.sort();
        o.regions = keyed.into_iter().map(|k| k.1).collect();
    };
    by_regions(&mut o);
    let mut best = o.clone();
    let mut fewest = crossings(sys, reach, &o);
    for _ in 0..6 {
        // Devices by the regions they reach, and owners by their devices'.
        let keys: Vec<(usize, usize)> =
            o.devices.iter().enumerate().map(|(at, &d)| (device_rows(&o, d, at), d)).collect();
        let owner_key =
            |owner: &str| mean(keys.iter().filter(|(_, d)| owner_of(sys, *d) == owner).map(|(k, _)| *k / 1000), 0);
        let mut owners: Vec<(usize, &str)> = o.owners.iter().map(|w| (owner_key(w), *w)).collect();
        owners.sort();
        o.owners = owners.into_iter().map(|w| w.1).collect();
        let mut devices = keys;
        devices.sort_by_key(|&(k, d)| (o.owners.iter().position(|w| *w == owner_of(sys, d)), k, d));
        o.devices = devices.into_iter().map(|(_, d)| d).collect();
        by_regions(&mut o);
        let n = crossings(sys, reach, &o);
        if n < fewest {
            fewest = n;
            best = o.clone();
        }
    }
    best
}

/// The picture of `sys`; with the Microkit tool's report read (`placement`), each region
/// the tool placed shows where.
pub fn svg(sys: &System, placed: Option<&BTreeMap<String, Placed>>) -> String {
    let reach = reachability(sys);
    let Order { owners, devices, regions } = order(sys, &reach);
    let row_of = |name: &str| devices.iter().position(|&d| sys.io_spaces[d].name == name).unwrap_or(0);
    // Each region's edges, in device order, one line each.
    let edges: Vec<Vec<&Reach>> = regions
        .iter()
        .map(|mr| {
            let mut e: Vec<&Reach> = reach.iter().filter(|r| r.region == *mr).collect();
            e.sort_by_key(|r| row_of(&r.device));
            e
        })
        .collect();

    let top = 40;
    let pd_items: Vec<Vec<String>> = owners
        .iter()
        .map(|o| {
            let mut l = vec![format!("PD {o}")];
            if let Some(q) = sys.quotas.iter().find(|q| q.pd == *o) {
                l.push(format!("quota {} mappings, {} pages, {} grants", q.mappings, q.pages, q.grants));
            }
            l
        })
        .collect();
    let pds = column(pd_items, 10, top);
    let dev_x = 10 + pds.first().map_or(0, |b| b.w) + GAP_X;
    let dev_items: Vec<Vec<String>> = devices
        .iter()
        .map(|&d| {
            let s = &sys.io_spaces[d];
            vec![
                format!("{} (stream {:#x})", s.name, s.stream),
                format!("IOVA {:#x}..{:#x}", s.iova_base, s.iova_base.saturating_add(s.iova_size)),
            ]
        })
        .collect();
    let devs = column(dev_items, dev_x, top);
    let reg_x = dev_x + devs.first().map_or(0, |b| b.w) + GAP_X + 60;
    let reg_items: Vec<Vec<String>> = regions
        .iter()
        .zip(&edges)
        .map(|(mr, e)| {
            let placed = match (sys.region(mr).and_then(|r| r.phys_addr), placed.and_then(|p| p.get(*mr))) {
                (Some(pa), _) => format!(" at phys {pa:#x}"),
                (None, Some(p)) => format!(" placed at phys {}", placement::shown(p)),
                (None, None) => " (placed by the Microkit tool)".to_string(),
            };
            std::iter::once(format!("{mr}{placed}")).chain(e.iter().map(|r| range(r))).collect()
        })
        .collect();
    let regs = column(reg_items, reg_x, top);

    let legend_y =
        [&pds, &devs, &regs].iter().filter_map(|c| c.last()).map(|b| b.y + b.height()).max().unwrap_or(top) + 30;
    let legend = [
        (Some(("gray", r#" stroke-dasharray="4""#)), "a PD owns (drives) a device"),
        (Some(Path::Own.style()), "the device reaches the region through a capability its owner holds"),
        (Some(Path::Grant.style()), "the device may reach it if another PD GRANTs (lends) it to the owner"),
        (Some(Path::Iomap.style()), "a static mapping (iomap) or a guest's RAM"),
        (None, "boxes: green PD (quota), blue device (StreamID, IOVA window), tan region (one line per range)"),
    ];
    let width_px = reg_x + regs.first().map_or(200, |b| b.w) + 20;
    let legend_w = legend.iter().map(|(_, t)| t.chars().count()).max().unwrap_or(0) * CHAR_W + 80;
    let width_px = width_px.max(legend_w + 20);
    let height = legend_y + 20 + legend.len() * LINE_H + 10;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width_px}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(o, "<defs>");
    for (id, color) in
        [("own", Path::Own.style().0), ("grant", Path::Grant.style().0), ("iomap", Path::Iomap.style().0)]
    {
        let _ = writeln!(
            o,
            r#"<marker id="{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>"#
        );
    }
    let _ = writeln!(o, "</defs>");
    let _ = writeln!(o, r#"<text x="10" y="20" font-weight="bold">What each device can ever reach</text>"#);
    for b in &pds {
        b.draw(&mut o, "honeydew");
    }
    for b in &devs {
        b.draw(&mut o, "lightsteelblue");
    }
    for b in &regs {
        b.draw(&mut o, "wheat");
    }
    for (row, &d) in devices.iter().enumerate() {
        let owner = sys.io_spaces[d].owner.as_deref().unwrap_or("(no owner)");
        if let (Some(p), Some(dev)) = (owners.iter().position(|x| *x == owner).and_then(|i| pds.get(i)), devs.get(row))
        {
            let _ = writeln!(
                o,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="gray" stroke-dasharray="4"/>"#,
                p.x + p.w,
                p.line_y(0),
                dev.x,
                dev.line_y(0)
            );
        }
    }
    for (b, e) in regs.iter().zip(&edges) {
        for (i, r) in e.iter().enumerate() {
            let dev = &devs[row_of(&r.device)];
            let path = Path::of(r);
            let (color, dash) = path.style();
            let marker = match path {
                Path::Own => "own",
                Path::Grant => "grant",
                Path::Iomap => "iomap",
            };
            let width = if path == Path::Grant { 2 } else { 1 };
            let _ = writeln!(
                o,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="{width}"{dash} marker-end="url(#{marker})"/>"#,
                dev.x + dev.w,
                dev.line_y(0),
                b.x,
                b.line_y(i + 1)
            );
        }
    }
    let _ = writeln!(o, r#"<text x="10" y="{}" font-weight="bold">Legend</text>"#, legend_y + 4);
    for (i, (style, text)) in legend.iter().enumerate() {
        let y = legend_y + 20 + i * LINE_H;
        if let Some((color, dash)) = style {
            let _ = writeln!(o, r#"<line x1="10" y1="{y}" x2="60" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>"#);
        }
        let _ = writeln!(o, r#"<text x="70" y="{}">{}</text>"#, y + 4, esc(text));
    }
    let _ = writeln!(o, "</svg>");
    o
}
