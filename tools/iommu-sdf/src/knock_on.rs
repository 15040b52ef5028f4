//! No knock-on errors: a problem that only follows from one already reported is left out,
//! as a compiler reports an undeclared name once and not at every use. What follows:
//! - a definition refused (by the reader, or as a duplicate, or for its name): every other
//!   problem that names it (a capability that runs past a region whose size was refused,
//!   a map of a region whose name was refused); and when the name it was meant to have is
//!   unknown (no `name`, a name refused, a second definition of a name, which was probably
//!   meant as another), every problem that names something no element defines;
//! - a name used and defined nowhere: reported at the first problem that names it, and
//!   neither it nor the name it probably meant (the "did you mean") again;
//! - an `<iommu>` whose PD does not exist: every rule that depends on which PD the IOMMU
//!   PD is (its children's ids, the fault rings, channels), which is all but the reading;
//! - the generated numbers' collisions, when any definition was refused (they are
//!   computed from what was read, without it).
//!
//! Every problem left out mentions a name a problem kept names, so fixing what is
//! reported and checking again shows anything that was independent.
use std::collections::HashSet;

use crate::model::{Line, System};
use crate::Problem;

/// The elements that define a name others refer to.
const DEFINING: &[&str] =
    &["memory_region", "protection_domain", "io_address_space", "dma_capability", "virtual_machine"];

/// Whether `p` refuses a definition whose name is then unknown (so any name nothing
/// defines may have been meant as it).
fn loses_the_name(p: &Problem) -> bool {
    p.message.starts_with("missing attribute `name`")
        || p.message.contains("is not one build can write safely")
        || p.message.starts_with("a second ")
}

/// Whether `p` refuses a definition (the reader's problems with a defining element, a
/// duplicate, a name build cannot write).
/// An attribute the reader does not know is refused on its own: the definition stands.
fn refuses_a_definition(p: &Problem, from_reader: bool) -> bool {
    DEFINING.contains(&p.element.as_str())
        && ((from_reader && !p.message.starts_with("unknown attribute")) || loses_the_name(p))
}

/// The names in backquotes in `message`.
fn names_in(message: &str) -> impl Iterator<Item = &str> {
    message.split('`').skip(1).step_by(2)
}

/// The names `message` uses that nothing defines: those no element of any kind defines,
/// and those it says are not what they are used as (a region's name used for a
/// capability's region is defined, as a capability).
fn undefined_in<'a>(message: &'a str, defined: &HashSet<&str>) -> Vec<&'a str> {
    let said = |n: &str| {
        [
            "` does not exist",
            "`, which is not a protection domain",
            "` is not a protection domain",
            "` is not a virtual machine",
        ]
        .iter()
        .any(|tail| message.contains(&format!("`{n}{tail}")))
            || (message.contains(&format!("`{n}` of ")) && message.contains("is not an io_address_space"))
    };
    names_in(message).filter(|n| !defined.contains(n) || said(n)).collect()
}

/// Attribute `attr` on `line` of `text`, if the element's first line carries it.
fn attr_on_line<'a>(text: &'a str, line: u32, attr: &str) -> Option<&'a str> {
    let l = text.lines().nth((line as usize).checked_sub(1)?)?;
    let key = format!(" {attr}=\"");
    let at = l.find(&key)? + key.len();
    l[at..].split('"').next()
}

/// The name a "did you mean" in `message` proposes.
fn meant(message: &str) -> Option<&str> {
    let at = message.find("(did you mean `")? + "(did you mean `".len();
    message[at..].split('`').next()
}

/// `read` (the reader's problems), `rules` (the rules' and the policy's) and
/// `numbers` (the generated numbers'), without the knock-on ones, sorted by line.
pub fn first_causes(
    text: &str,
    sys: &System,
    read: Vec<Problem>,
    rules: Vec<Problem>,
    numbers: Vec<Problem>,
) -> Vec<Problem> {
    let defined: HashSet<&str> = sys
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .chain(sys.pds.iter().map(|p| p.name.as_str()))
        .chain(sys.pds.iter().flat_map(|p| p.vms.iter().map(|v| v.name.as_str())))
        .chain(sys.io_spaces.iter().map(|s| s.name.as_str()))
        .chain(sys.caps.iter().map(|c| c.name.as_str()))
        .collect();
    let (any_refused, mut poisoned, any_undefined_poisoned) = {
        let refusals: Vec<&Problem> = read
            .iter()
            .filter(|p| refuses_a_definition(p, true))
            .chain(rules.iter().filter(|p| refuses_a_definition(p, false)))
            .collect();
        // The names of refused definitions, as written where they were refused.
        let names: HashSet<String> =
            refusals.iter().filter_map(|p| attr_on_line(text, p.line, "name")).map(str::to_string).collect();
        (!refusals.is_empty(), names, refusals.iter().any(|p| loses_the_name(p)))
    };
    let no_iommu_pd = sys.iommu.as_ref().is_some_and(|i| sys.pd(&i.pd).is_none());
    // Elements with a number the reader could not read: what a rule then says of that
    // element follows from the value put in its place (a quota's is the largest).
    let unread: HashSet<(Line, String)> = read
        .iter()
        .filter(|p| p.message.contains("` is not a number: "))
        .map(|p| (p.line, p.element.clone()))
        .collect();

    // A plumbing region made for a PD whose definition was refused is refused with it.
    let faults: Vec<String> = poisoned.iter().map(|n| format!("{n}_faults")).collect();
    poisoned.extend(faults);
    let (mut rules, reader_refusals): (Vec<Problem>, Vec<Problem>) = {
        let (refusals, others): (Vec<Problem>, Vec<Problem>) =
            read.into_iter().partition(|p| refuses_a_definition(p, true));
        (others.into_iter().chain(rules).collect(), refusals)
    };
    if !any_refused {
        rules.extend(numbers);
    }
    rules.sort_by_key(|p| p.line);
    let mut kept: Vec<Problem> = Vec::new();
    let mut reported_undefined: HashSet<String> = HashSet::new();
    // First the problems that refuse definitions, or report names nothing defines, each
    // such name once: they are first causes wherever they are in the file.
    let mut rest = Vec::new();
    for p in rules {
        if refuses_a_definition(&p, false) || (no_iommu_pd && p.element == "iommu") {
            kept.push(p);
            continue;
        }
        if no_iommu_pd {
            continue;
        }
        let undefined: Vec<String> = undefined_in(&p.message, &defined).into_iter().map(str::to_string).collect();
        let fresh = undefined.iter().any(|n| !reported_undefined.contains(n));
        let about_refused = names_in(&p.message).any(|n| poisoned.contains(n));
        if !undefined.is_empty() && fresh && !any_undefined_poisoned && !about_refused {
            reported_undefined.extend(undefined);
            if let Some(m) = meant(&p.message) {
                poisoned.insert(m.to_string());
            }
            kept.push(p);
        } else {
            rest.push(p);
        }
    }
    for p in rest {
        if unread.contains(&(p.line, p.element.clone())) {
            continue;
        }
        let undefined = undefined_in(&p.message, &defined);
        let knock_on = names_in(&p.message).any(|n| {
            poisoned.contains(n) || reported_undefined.contains(n) || (any_undefined_poisoned && undefined.contains(&n))
        });
        if !knock_on {
            kept.push(p);
        }
    }
    let mut all = reader_refusals;
    all.extend(kept);
    all.sort_by_key(|p| p.line);
    all
}
