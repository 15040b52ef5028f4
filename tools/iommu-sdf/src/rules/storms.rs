//! Fault storms (`<iommu max_faults fault_window_us>`): more than `max_faults` faults of one
//! device within the window quarantine it, and its owner may resume it once a window. What
//! the IOMMU PD does with the two numbers (`iommu_pd::FaultPolicy`, `pds/iommu`'s
//! `FAULT_WINDOW_US` in generic-timer ticks) must still quarantine a storm and still let
//! a quarantined device be resumed.

use crate::board::{Board, BoardIommu};
use crate::model::*;
use crate::problem::{p, Problem};

/// An event record's bytes (Arm IHI 0070, 7.2: 32).
const EVENT_BYTES: u64 = 32;
/// How long the IOMMU PD may leave records in the event queue while they keep coming, once
/// it runs: its poll period where the SMMU's interrupts are not wired (`pds/iommu`'s
/// `POLL_US`), the slowest of its wake-ups; wired, it is woken at the records.
pub const DRAIN_PERIOD_US: u64 = 10_000;
/// The EL1 physical timer's interrupt, and the id the IOMMU PD takes it on (`pds/iommu`'s
/// `TIMER_IRQ`); its SMMUv3's event-queue and global-error interrupts are ids 10 and 11.
const TIMER: (u64, u64) = (12, 30);
const SMMU_IDS: [u64; 2] = [10, 11];

/// The longest the IOMMU PD `iommu` can go between two drains of the event queue while
/// records come, from what the description guarantees, or why nothing bounds it. Its
/// wake-ups bound it at `DRAIN_PERIOD_US` only if it has one (the SMMU's interrupts, or
/// the timer's: with neither it reads the queue when a request comes, if one comes) and
/// runs when woken: what may run on its core at its priority or above (`runs_on_its_core`;
/// seL4 runs the highest ready thread of a core) has a budget below its period, whose
/// budgets come out of its seL4 domain's slots (`held_off`: one without would hold it off
/// for good), and its domain's slots come round (`own_domains_cycle`).
///
/// What else could hold it, and why it does not: a PD below its priority never runs while
/// it is ready (seL4 preempts at once), and none can raise itself or another to its
/// priority (Microkit gives each PD its own priority as its maximum controlled priority,
/// and `scheduling` refuses a PD with a TCB capability at or above it); its own scheduling
/// context, and with a passive IOMMU PD every lender's, has its budget equal to its period
/// (`scheduling`), so no budget runs out while it drains. Where it stops: the kernel's own
/// time, Microkit's monitor (priority 255: once per fault of a PD without a parent, which
/// it does not restart) and the time a drain takes are not counted.
fn drain_period_us(sys: &System, board: &Board, iommu: &ProtectionDomain) -> Result<u64, String> {
    let has = |id: u64, irq: Option<u64>| iommu.irqs.iter().any(|i| i.id == id && (irq.is_none() || i.irq == irq));
    if !SMMU_IDS.iter().all(|&id| has(id, None)) && !has(TIMER.0, Some(TIMER.1)) {
        return Err(format!(
            "it has neither its SMMU's interrupts (ids {} and {}) nor the timer's (irq {} on id {}), so it reads the queue only when a request comes, if one does",
            SMMU_IDS[0], SMMU_IDS[1], TIMER.1, TIMER.0
        ));
    }
    // Those at its priority or above run first, each for at most its budget in any window
    // of its period (seL4's MCS kernel: a scheduling context is a sporadic server); one
    // whose budget is its period, or a passive one (it runs on its callers' budgets), is
    // bounded by nothing.
    let cycle = own_domains_cycle(sys, board, iommu)?;
    // With domains, a PD of another domain runs only in that domain's slots, already
    // counted as time the IOMMU PD's domain does not have.
    let in_its_slots = |pd: &ProtectionDomain| cycle.is_none() || pd.domain.is_none() || pd.domain == iommu.domain;
    let mut above = Vec::new();
    for (pd, how) in
        runs_on_its_core(sys, iommu).into_iter().filter(|(pd, _)| pd.priority >= iommu.priority && in_its_slots(pd))
    {
        if pd.passive || pd.budget >= pd.period {
            return Err(format!(
                "`{}` {how} at priority {}, not below its {}, {}: seL4 runs it first, and it may never block",
                pd.name,
                pd.priority,
                iommu.priority,
                if pd.passive {
                    "passive (it runs on the budgets of those it serves)"
                } else {
                    "with no budget below its period"
                }
            ));
        }
        above.push((u128::from(pd.budget), u128::from(pd.period.max(1))));
    }
    let wait = held_off(cycle.as_deref(), &above)?;
    u64::try_from(wait + u128::from(DRAIN_PERIOD_US)).map_err(|_| "its wait runs past 2^64 us".to_string())
}

/// The longest the IOMMU PD waits, woken, when its domain has the slots of `cycle` (`None`:
/// no domains, the core is always its domain's) and the PDs `above` it in its domain
/// (budget, period) take their budgets out of those slots: the least fixed point above 0 of
/// w = supply(sum(ceil(w / period) * budget)), where supply(x) is the longest it takes,
/// from any point of the cycle, until its domain has had more than x us (`supplied`):
/// response-time analysis at the instant all of them start, its own drain taken as no
/// time, each taking at least one budget. Not w = gap + sum(...): their budgets come out
/// of its own slots, which may be short (a budget as long as its slot takes the whole
/// slot, and the wait is a gap more for each). Refused where their budgets take at least
/// its domain's share of the core (no fixed point), or where the arithmetic or the
/// iteration cannot settle it (an answer this tool cannot prove).
fn held_off(cycle: Option<&[(bool, u128)]>, above: &[(u128, u128)]) -> Result<u128, String> {
    let unsettled = || "its wait for the PDs at its priority or above could not be bounded".to_string();
    // Their share of the core, sum(budget / period), as an exact fraction.
    let (mut num, mut den) = (0u128, 1u128);
    for &(b, p) in above {
        let g = gcd(den, p);
        let (n, d) = (num.checked_mul(p / g), den.checked_mul(p / g));
        let (Some(n), Some(d)) = (n.and_then(|n| n.checked_add(b.checked_mul(den / g)?)), d) else {
            return Err(unsettled());
        };
        let g = gcd(n, d).max(1);
        (num, den) = (n / g, d / g);
    }
    // Its domain's share of the core, own / all of the cycle.
    let (own, all) = match cycle {
        Some(c) => c.iter().fold((0u128, 0u128), |(o, a), &(is_own, us)| (o + if is_own { us } else { 0 }, a + us)),
        None => (1, 1),
    };
    match (num.checked_mul(all), own.checked_mul(den)) {
        (Some(taken), Some(had)) if taken < had => {}
        (Some(_), Some(_)) if cycle.is_none() => {
            return Err("the budgets of the PDs at its priority or above take its whole core".to_string())
        }
        (Some(_), Some(_)) => {
            return Err("the budgets of the PDs at its priority or above take all of its domain's slots".to_string())
        }
        _ => return Err(unsettled()),
    }
    let demand = |w: u128| above.iter().map(|&(b, p)| w.div_ceil(p) * b).sum::<u128>();
    let mut wait = supplied(cycle, above.iter().map(|&(b, _)| b).sum::<u128>()).ok_or_else(unsettled)?;
    for _ in 0..100_000 {
        let next = supplied(cycle, demand(wait)).ok_or_else(unsettled)?;
        if next == wait {
            return Ok(wait);
        }
        if next > u128::from(u64::MAX) {
            return Err(unsettled());
        }
        wait = next;
    }
    Err(unsettled())
}

/// The longest it takes, from any point of the domain cycle `cycle` (each slot: whether it
/// is the IOMMU PD's domain's, and its length in us), until that domain has had more than
/// `x` us of its slots (`None`: it has none, or past 2^128). The worst start is just after
/// one of its own slots: one inside a slot gets the rest of that slot at once, one inside
/// another domain's run waits less of it.
fn supplied(cycle: Option<&[(bool, u128)]>, x: u128) -> Option<u128> {
    let Some(cycle) = cycle else { return Some(x) };
    let own: u128 = cycle.iter().filter(|s| s.0).map(|s| s.1).sum();
    let all: u128 = cycle.iter().map(|s| s.1).sum();
    if own == 0 {
        return None;
    }
    // Whole rounds of the cycle first, then at most one more.
    let rounds = x / own;
    let mut longest = None;
    for after in (0..cycle.len()).filter(|&i| cycle[i].0) {
        let (mut elapsed, mut had) = (rounds.checked_mul(all)?, rounds * own);
        for &(is_own, us) in cycle.iter().cycle().skip(after + 1).take(2 * cycle.len()) {
            if is_own && had + us > x {
                elapsed = elapsed.checked_add(x - had)?;
                break;
            }
            had += if is_own { us } else { 0 };
            elapsed = elapsed.checked_add(us)?;
        }
        longest = longest.max(Some(elapsed));
    }
    longest
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The cycle of the domain schedule (each slot: whether it is the IOMMU PD's domain's, and
/// its length in us; `None` without a domain schedule), or why its domain may never run.
fn own_domains_cycle(
    sys: &System,
    board: &Board,
    iommu: &ProtectionDomain,
) -> Result<Option<Vec<(bool, u128)>>, String> {
    let Some(schedule) = sys.domain_schedule.as_ref().filter(|d| !d.names.is_empty()) else {
        return Ok(None);
    };
    let Some(own) = iommu.domain.as_deref() else {
        return Err("it is in no domain the schedule names".to_string());
    };
    // The entries the kernel cycles through: from the start to the first end marker (or
    // the schedule's end, an implicit one), then from the start again. Entries outside it
    // never run.
    let cycle: Vec<&ScheduleEntry> =
        schedule.entries.iter().skip(schedule.start_index as usize).take_while(|e| e.domain.is_some()).collect();
    if !cycle.iter().any(|e| e.domain.as_deref() == Some(own)) {
        return Err(format!("its domain `{own}` has no slot between the schedule's start and its end marker"));
    }
    cycle
        .iter()
        .map(|e| Ok((e.domain.as_deref() == Some(own), slot_us(e.duration, board)?)))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The longest a domain's slot of `length` lasts, in us (rounded up): ticks of the board's
/// timer, or us, which the capDL initialiser turns into the nearest number of ticks (so at
/// most the next whole tick).
fn slot_us(length: SlotLength, board: &Board) -> Result<u128, String> {
    let hz = board.timer_hz.map(|hz| u128::from(hz.max(1))).ok_or_else(|| {
        format!(
            "the schedule's slots are kept in ticks of board {}'s timer, whose rate this tool does not know",
            board.name
        )
    });
    Ok(match length {
        SlotLength::Us(us) => {
            let hz = hz?;
            let ticks = (u128::from(us) * hz).div_ceil(1_000_000);
            (ticks * 1_000_000).div_ceil(hz)
        }
        SlotLength::Ticks(t) => (u128::from(t) * 1_000_000).div_ceil(hz?),
        SlotLength::None => 0,
    })
}

/// Every PD but `iommu` that may run on `iommu`'s core, with how: placed there (`cpu`), or
/// passive and lent a scheduling context of one that may (it answers its call, or takes
/// its fault as its parent, or as the VMM of a guest whose vCPU is on that core): seL4's
/// MCS kernel moves a thread to the core of the context it is lent, and it runs there at
/// its own priority.
fn runs_on_its_core<'a>(sys: &'a System, iommu: &ProtectionDomain) -> Vec<(&'a ProtectionDomain, String)> {
    let ends = sys.ends_by_pd();
    let mut found: Vec<(&ProtectionDomain, String)> = sys
        .pds
        .iter()
        .filter(|pd| pd.name != iommu.name && pd.cpu == iommu.cpu)
        .map(|pd| (pd, format!("runs on its core {}", iommu.cpu)))
        .collect();
    for vmm in sys.pds.iter().filter(|pd| pd.passive && pd.name != iommu.name) {
        if let Some(vm) = vmm.vms.iter().find(|vm| vm.vcpu_cpus.contains(&iommu.cpu)) {
            if !found.iter().any(|(f, _)| f.name == vmm.name) {
                let how = format!(
                    "runs on its core {} when its guest `{}`'s vCPU there faults (it is passive: it runs on the vCPU's scheduling context)",
                    iommu.cpu, vm.name
                );
                found.push((vmm, how));
            }
        }
    }
    let mut next = 0;
    while let Some(&(lender, _)) = found.get(next) {
        next += 1;
        let called = ends.get(lender.name.as_str()).into_iter().flatten().filter(|(mine, _)| mine.pp);
        let lent_to =
            called.filter_map(|(_, theirs)| Some((sys.pd(&theirs.pd)?, format!("`{}` calls it", lender.name)))).chain(
                lender
                    .parent
                    .as_deref()
                    .and_then(|p| Some((sys.pd(p)?, format!("its child `{}` faults", lender.name)))),
            );
        let mut more = Vec::new();
        for (pd, how) in lent_to {
            let known = found.iter().chain(&more).any(|(f, _): &(&ProtectionDomain, String)| f.name == pd.name);
            if pd.passive && pd.name != iommu.name && !known {
                more.push((
                    pd,
                    format!(
                        "runs on its core {} when {how} (it is passive: it runs on `{}`'s scheduling context)",
                        iommu.cpu, lender.name
                    ),
                ));
            }
        }
        found.extend(more);
    }
    found
}

/// Every fault-storm rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(i) = &sys.iommu else { return };
    if i.max_faults == 0 || i.max_faults > u32::MAX as u64 || i.fault_window_us == 0 {
        out.push(p(
            i.line,
            "iommu",
            format!(
                "fault storms are set to more than {} faults in {} us: a device would be quarantined by its first fault, or never",
                i.max_faults, i.fault_window_us
            ),
            "give max_faults between 1 and 4294967295 and fault_window_us of at least 1 (or leave both out: 300 in a second)",
        ));
        return;
    }
    // The IOMMU PD stamps the records of one drain with one time, and a drain holds at
    // most a queue's worth of them, so a storm is counted past `max_faults` only over
    // ceil((max_faults + 1) / entries) drains inside one window. Its queue is the most
    // records a power of two its `eventq` region holds, at most the SMMU's (smmuv3's
    // `queue_log2`): 128 in one page, 2048 in 64 KiB. Where the window cannot
    // hold that many drain periods, a device faulting as fast as the bus lets it may stay
    // under the limit forever, overflowing the queue every device shares (each overflow
    // loses a bystander's record) with nothing quarantined. (An MMU-500 has no shared
    // queue: each device's faults are its own context bank's.)
    if let (BoardIommu::SmmuV3 { eventq_log2, .. }, Some(pd)) = (board.iommu, sys.pd(&i.pd)) {
        // Without the region (another rule's refusal), the smallest it could be: one page.
        let region = i.private.iter().find(|(role, _)| *role == "eventq").and_then(|(_, r)| sys.region(r));
        let records = (region.map_or(PAGE, |r| r.size) / EVENT_BYTES).max(1);
        let entries = (1u64 << records.ilog2()).min(1 << eventq_log2);
        let drains = (i.max_faults + 1).div_ceil(entries);
        let storm = format!(
            "max_faults {} needs {drains} drains of the event queue ({entries} records each) inside one fault_window_us of {} us",
            i.max_faults, i.fault_window_us
        );
        let fix = format!("give max_faults below {entries} (one drain is then enough)");
        match drain_period_us(sys, board, pd) {
            _ if drains <= 1 => {}
            Ok(period) => {
                let needed = u128::from(drains) * u128::from(period);
                if u128::from(i.fault_window_us) < needed {
                    out.push(p(
                        i.line,
                        "iommu",
                        format!(
                            "{storm}, and the IOMMU PD may drain it only every {period} us: a storm could overflow the queue every device shares and never be quarantined"
                        ),
                        format!("{fix}, or fault_window_us of at least {needed}"),
                    ));
                }
            }
            Err(why) => out.push(p(
                i.line,
                "iommu",
                format!(
                    "{storm}, and nothing bounds how long the IOMMU PD `{}` may leave the queue undrained: {why}; a storm could overflow the queue every device shares and never be quarantined",
                    pd.name
                ),
                format!(
                    "{fix}, or give the IOMMU PD a wake-up it runs at (the timer's interrupt: <irq irq=\"{}\" id=\"{}\" />, or its SMMU's on ids {} and {}), the highest priority of every PD that may run on its core (a passive PD runs on the core of the PD that calls it, of its child that faults, or of its guest's vCPU), and a slot in every round of the domain schedule",
                    TIMER.1, TIMER.0, SMMU_IDS[0], SMMU_IDS[1]
                ),
            )),
        }
    }
    // RESUME after a storm waits out a window (`FaultPolicy::resume_rest_ms`), and the
    // IOMMU PD counts the window in the generic timer's ticks (`ticks_from_us`, saturating
    // at 2^64 - 1): a window of 2^64 ticks or more never ends, and a device it quarantined
    // is never resumed (its rest outlasts the counter).
    if let Some(hz) = board.timer_hz {
        let ticks = u128::from(i.fault_window_us) * u128::from(hz) / 1_000_000;
        if ticks > u128::from(u64::MAX) {
            let most = u128::from(u64::MAX) * 1_000_000 / u128::from(hz);
            out.push(p(
                i.line,
                "iommu",
                format!(
                    "fault_window_us {} is {ticks} ticks of board {}'s {hz} Hz timer, past 2^64: the IOMMU PD's window never ends, and a device a storm quarantined could never be resumed",
                    i.fault_window_us, board.name
                ),
                format!("give fault_window_us of at most {most}"),
            ));
        }
    }
}
