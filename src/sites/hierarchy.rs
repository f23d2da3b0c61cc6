//! The site hierarchy (issue 15): which meter measures part of which, as pure functions of a
//! site's devices. Main meters are the supply points (the site's totals and bills add up only
//! them, in `measurements::energy`); a sub-meter sits under a main or another sub-meter of the
//! same site; generation and check meters stand alone and are never added to consumption.

use std::collections::{HashMap, HashSet};

use crate::error::FieldErrors;

pub const MAIN: &str = "main";
pub const SUB: &str = "sub";

/// `(value, label)` of the roles the database accepts, in the form's order.
pub const ROLES: [(&str, &str); 4] = [
    (MAIN, "Main: a supply point, counted in the site's totals and bills"),
    (SUB, "Sub-meter: part of what another meter here measures"),
    ("generation", "Generation (e.g. solar): shown, never added to consumption"),
    ("check", "Check meter: a second meter on a supply already metered, not counted"),
];

pub fn role_label(role: &str) -> &'static str {
    match role {
        MAIN => "Main",
        SUB => "Sub-meter",
        "generation" => "Generation",
        "check" => "Check meter",
        _ => "Unknown role",
    }
}

/// A device of a site as the hierarchy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: i32,
    pub name: String,
    pub role: String,
    pub parent: Option<i32>,
}

/// Where a form wants a device: its role and (for a sub-meter) its parent, on `site`.
pub struct Placement {
    /// The device being edited; `None` for a new one.
    pub device: Option<i32>,
    /// The site it was on (`None` for a new one) and the one it goes to.
    pub from_site: Option<i32>,
    pub site: i32,
    pub role: &'static str,
    pub parent: Option<i32>,
}

/// Checks a placement against the devices as they are: `target` the devices of the site it
/// goes to, `current` those of the site it is on now (the same list when it stays), and
/// `parent_site` the site of the chosen parent (`None`: no such device). The errors name the
/// field and the meters involved.
pub fn check(
    p: &Placement,
    target: &[Node],
    current: &[Node],
    parent_site: Option<Option<i32>>,
) -> Result<(), FieldErrors> {
    let mut e = FieldErrors::default();
    if let Some(device) = p.device {
        let children: Vec<&str> =
            current.iter().filter(|n| n.parent == Some(device)).map(|n| n.name.as_str()).collect();
        if !children.is_empty() {
            let names = match children.as_slice() {
                [one] => format!("{one} is a sub-meter of this device"),
                many => format!("{} are sub-meters of this device", many.join(", ")),
            };
            let them = if children.len() == 1 { "it" } else { "them" };
            if p.from_site.is_some_and(|s| s != p.site) {
                e.add(
                    "site_id",
                    format!("{names}: give {them} another parent before moving this device to another site."),
                );
            }
            if p.role != MAIN && p.role != SUB {
                e.add(
                    "role",
                    format!(
                        "{names}, and only a main or sub-meter can have sub-meters: give {them} another parent first."
                    ),
                );
            }
        }
    }
    if let Some(parent) = p.parent {
        let by_id: HashMap<i32, &Node> = target.iter().map(|n| (n.id, n)).collect();
        if Some(parent) == p.device {
            e.add("parent_id", "A device cannot be its own parent: choose the meter it is part of.");
        } else if let Some(node) = by_id.get(&parent) {
            if node.role != MAIN && node.role != SUB {
                e.add(
                    "parent_id",
                    format!(
                        "{} is a {} meter; a sub-meter's parent must be a main or sub-meter.",
                        node.name,
                        role_label(&node.role).to_lowercase()
                    ),
                );
            } else if let Some(device) = p.device
                && let Some(path) = below(&by_id, parent, device)
            {
                e.add(
                    "parent_id",
                    format!(
                        "{} is itself a sub-meter below this device ({}): that would make a loop. \
                         Choose a meter above this one.",
                        node.name,
                        path.join(" → ")
                    ),
                );
            }
        } else if let Some(Some(_)) = parent_site {
            e.add(
                "parent_id",
                "That meter is at another site: a sub-meter's parent must be on the same site.".to_string(),
            );
        } else {
            e.add("parent_id", "That meter no longer exists: choose another parent.");
        }
    }
    e.or_ok(())
}

/// If `node` is `device` or below it, the names from `device` down to `node`.
fn below(by_id: &HashMap<i32, &Node>, node: i32, device: i32) -> Option<Vec<String>> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut at = Some(node);
    while let Some(id) = at {
        if !seen.insert(id) {
            return None; // a loop that does not pass through `device` (cannot be stored; defensive)
        }
        let n = by_id.get(&id)?;
        if id == device {
            chain.reverse();
            return Some(std::iter::once("this device".to_string()).chain(chain).collect());
        }
        chain.push(n.name.clone());
        at = n.parent;
    }
    None
}

/// One meter's energy over the breakdown's two periods (kWh).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kwh {
    pub today: f64,
    pub month: f64,
}

impl Kwh {
    fn minus(self, other: Kwh) -> Kwh {
        Kwh { today: self.today - other.today, month: self.month - other.month }
    }

    fn plus(self, other: Kwh) -> Kwh {
        Kwh { today: self.today + other.today, month: self.month + other.month }
    }
}

/// A line of the breakdown.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A meter, `depth` levels below its main meter (0: a main, generation or check meter).
    Meter { id: i32, name: String, role: String, depth: usize, kwh: Kwh },
    /// What `parent` measured beyond its sub-meters: parent − Σ of its direct sub-meters.
    Remainder { parent: i32, name: String, depth: usize, kwh: Kwh },
}

/// The breakdown of a site.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// The site's consumption: Σ of the main meters (what its totals and bills use).
    pub main: Kwh,
    /// Σ of the generation meters (shown, not added to consumption).
    pub generation: Kwh,
    /// Each main meter followed by its sub-meters (depth first, by name) and after each meter
    /// with sub-meters its unmetered remainder; then the generation and check meters.
    pub lines: Vec<Line>,
}

/// The breakdown of a site's `nodes` (by name) with each meter's energy (`kwh`, absent: 0).
pub fn breakdown(nodes: &[Node], kwh: &HashMap<i32, Kwh>) -> Breakdown {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id)));
    let energy = |id: i32| kwh.get(&id).copied().unwrap_or_default();
    let mut out = Breakdown { main: Kwh::default(), generation: Kwh::default(), lines: Vec::new() };
    fn walk(node: &Node, depth: usize, sorted: &[&Node], energy: &dyn Fn(i32) -> Kwh, lines: &mut Vec<Line>) {
        let own = energy(node.id);
        lines.push(Line::Meter { id: node.id, name: node.name.clone(), role: node.role.clone(), depth, kwh: own });
        let children: Vec<&&Node> = sorted.iter().filter(|n| n.parent == Some(node.id)).collect();
        if children.is_empty() || depth > sorted.len() {
            return;
        }
        let mut metered = Kwh::default();
        for child in &children {
            metered = metered.plus(energy(child.id));
            walk(child, depth + 1, sorted, energy, lines);
        }
        lines.push(Line::Remainder {
            parent: node.id,
            name: node.name.clone(),
            depth: depth + 1,
            kwh: own.minus(metered),
        });
    }
    for node in sorted.iter().filter(|n| n.role == MAIN) {
        out.main = out.main.plus(energy(node.id));
        walk(node, 0, &sorted, &energy, &mut out.lines);
    }
    for node in sorted.iter().filter(|n| n.role != MAIN && n.role != SUB) {
        if node.role == "generation" {
            out.generation = out.generation.plus(energy(node.id));
        }
        walk(node, 0, &sorted, &energy, &mut out.lines);
    }
    out
}

/// A line of the breakdown as the site page shows it.
pub struct LineView {
    /// `data-field` prefix of its figures: `meter-<id>` or `remainder-<parent id>`.
    pub key: String,
    /// The meter's page, `None` for a remainder.
    pub href: Option<String>,
    pub label: String,
    pub role: &'static str,
    /// Indentation level, 0 to 4 (a CSS class: the CSP allows no inline style).
    pub depth: usize,
    pub today: String,
    pub month: String,
}

/// The site page's hierarchy section (`templates/sites/_hierarchy.html`).
pub struct HierarchyView {
    pub lines: Vec<LineView>,
    pub main_today: String,
    pub main_month: String,
    /// `None` without generation meters.
    pub generation: Option<(String, String)>,
    /// Every device is a main meter: the site's totals add them all up (the migrated default).
    pub all_main: bool,
    /// How many main meters the totals add up.
    pub mains: usize,
}

pub fn view(nodes: &[Node], b: &Breakdown) -> HierarchyView {
    let kwh = |v: f64| crate::dashboards::figures::kwh_text(v);
    let lines = b
        .lines
        .iter()
        .map(|l| match l {
            Line::Meter { id, name, role, depth, kwh: k } => LineView {
                key: format!("meter-{id}"),
                href: Some(format!("/devices/{id}")),
                label: name.clone(),
                role: role_label(role),
                depth: (*depth).min(4),
                today: kwh(k.today),
                month: kwh(k.month),
            },
            Line::Remainder { parent, name, depth, kwh: k } => LineView {
                key: format!("remainder-{parent}"),
                href: None,
                label: format!("Unmetered remainder of {name}"),
                role: "main − Σ sub-meters",
                depth: (*depth).min(4),
                today: kwh(k.today),
                month: kwh(k.month),
            },
        })
        .collect();
    let has_generation = nodes.iter().any(|n| n.role == "generation");
    HierarchyView {
        lines,
        main_today: kwh(b.main.today),
        main_month: kwh(b.main.month),
        generation: has_generation.then(|| (kwh(b.generation.today), kwh(b.generation.month))),
        all_main: nodes.iter().all(|n| n.role == MAIN),
        mains: nodes.iter().filter(|n| n.role == MAIN).count(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(id: i32, name: &str, role: &str, parent: Option<i32>) -> Node {
        Node { id, name: name.into(), role: role.into(), parent }
    }

    fn site() -> Vec<Node> {
        vec![
            node(1, "Incomer", MAIN, None),
            node(2, "Chillers", SUB, Some(1)),
            node(3, "Lighting", SUB, Some(1)),
            node(4, "Roof PV", "generation", None),
            node(5, "Utility check", "check", None),
            node(6, "Chiller 2", SUB, Some(2)),
        ]
    }

    fn place(device: Option<i32>, role: &'static str, parent: Option<i32>) -> Placement {
        Placement { device, from_site: device.map(|_| 7), site: 7, role, parent }
    }

    #[test]
    fn the_remainder_is_main_minus_its_sub_meters_and_only_main_meters_count() {
        let kwh: HashMap<i32, Kwh> = [(1, (100.0, 900.0)), (2, (30.0, 300.0)), (3, (50.0, 400.0)), (4, (12.0, 80.0))]
            .into_iter()
            .chain([(5, (99.0, 899.0)), (6, (10.0, 100.0))])
            .map(|(id, (today, month))| (id, Kwh { today, month }))
            .collect();
        let b = breakdown(&site(), &kwh);
        assert_eq!(b.main, Kwh { today: 100.0, month: 900.0 }, "the check meter and the PV are not consumption");
        assert_eq!(b.generation, Kwh { today: 12.0, month: 80.0 });
        let remainders: Vec<(i32, Kwh)> = b
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Remainder { parent, kwh, .. } => Some((*parent, *kwh)),
                Line::Meter { .. } => None,
            })
            .collect();
        assert_eq!(
            remainders,
            [(2, Kwh { today: 20.0, month: 200.0 }), (1, Kwh { today: 20.0, month: 200.0 })],
            "Chillers 30 − Chiller 2 10; Incomer 100 − (30 + 50)"
        );
        let order: Vec<String> = b
            .lines
            .iter()
            .map(|l| match l {
                Line::Meter { name, depth, .. } => format!("{depth} {name}"),
                Line::Remainder { name, depth, .. } => format!("{depth} rest of {name}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "0 Incomer",
                "1 Chillers",
                "2 Chiller 2",
                "2 rest of Chillers",
                "1 Lighting",
                "1 rest of Incomer",
                "0 Roof PV",
                "0 Utility check"
            ]
        );
    }

    #[test]
    fn parents_on_another_site_of_the_wrong_role_or_below_the_device_are_refused() {
        let nodes = site();
        let err = |p: Placement, parent_site| check(&p, &nodes, &nodes, parent_site).err().unwrap();
        assert!(err(place(Some(1), SUB, Some(1)), Some(Some(7))).get("parent_id").unwrap().contains("its own parent"));
        assert_eq!(
            err(place(Some(1), SUB, Some(6)), Some(Some(7))).get("parent_id").unwrap(),
            "Chiller 2 is itself a sub-meter below this device (this device → Chillers → Chiller 2): that would make \
             a loop. Choose a meter above this one."
        );
        assert!(err(place(None, SUB, Some(4)), Some(Some(7))).get("parent_id").unwrap().contains("generation meter"));
        assert!(err(place(None, SUB, Some(99)), Some(Some(8))).get("parent_id").unwrap().contains("another site"));
        assert!(err(place(None, SUB, Some(99)), None).get("parent_id").unwrap().contains("no longer exists"));
        let e = err(place(Some(2), "check", None), None);
        assert!(e.get("role").unwrap().starts_with("Chiller 2 is a sub-meter of this device, and only"), "{e}");
        let moved = Placement { site: 8, ..place(Some(1), MAIN, None) };
        assert!(
            check(&moved, &[], &nodes, None)
                .err()
                .unwrap()
                .get("site_id")
                .unwrap()
                .contains("Chillers, Lighting are sub-meters")
        );
        assert!(check(&place(Some(3), SUB, Some(2)), &nodes, &nodes, Some(Some(7))).is_ok());
        assert!(check(&place(Some(2), MAIN, None), &nodes, &nodes, None).is_ok(), "a parent may become main");
    }

    /// A random forest on one site: device `i`'s parent, if any, is an earlier device.
    fn forest() -> impl Strategy<Value = Vec<Node>> {
        prop::collection::vec((0..4usize, any::<prop::sample::Index>()), 1..12).prop_map(|spec| {
            let mut nodes: Vec<Node> = Vec::new();
            for (i, (role, pick)) in spec.into_iter().enumerate() {
                let parents: Vec<i32> =
                    nodes.iter().filter(|n| n.role == MAIN || n.role == SUB).map(|n| n.id).collect();
                let role = if role == 1 && parents.is_empty() { 0 } else { role };
                let parent = (role == 1).then(|| parents[pick.index(parents.len())]);
                nodes.push(node(i as i32 + 1, &format!("m{i}"), ROLES[role].0, parent));
            }
            nodes
        })
    }

    proptest! {
        /// Whatever is accepted keeps every chain of parents ending at a main meter (no loop), and
        /// the breakdown lists every meter once.
        #[test]
        fn accepted_placements_never_make_a_loop(nodes in forest(), device in any::<prop::sample::Index>(), parent in any::<prop::sample::Index>()) {
            let device = nodes[device.index(nodes.len())].id;
            let parent = nodes[parent.index(nodes.len())].id;
            let p = place(Some(device), SUB, Some(parent));
            if check(&p, &nodes, &nodes, Some(Some(7))).is_ok() {
                let moved: Vec<Node> = nodes.iter().map(|n| if n.id == device { node(n.id, &n.name, SUB, Some(parent)) } else { n.clone() }).collect();
                let by_id: HashMap<i32, &Node> = moved.iter().map(|n| (n.id, n)).collect();
                for n in &moved {
                    let (mut at, mut steps) = (n, 0);
                    while let Some(up) = at.parent {
                        at = by_id[&up];
                        steps += 1;
                        prop_assert!(steps <= moved.len(), "a loop through {}", n.name);
                    }
                    prop_assert!(n.role != SUB || at.role == MAIN);
                }
                let b = breakdown(&moved, &HashMap::new());
                let meters = b.lines.iter().filter(|l| matches!(l, Line::Meter { .. })).count();
                prop_assert_eq!(meters, moved.len());
            }
        }
    }
}
