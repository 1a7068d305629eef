//! `runbook graph`: the flow of a playbook as a picture — every step in
//! order, includes expanded as boxes, fallback edges, and the always-steps —
//! in Mermaid (GitHub renders it) or Graphviz DOT.

use std::fmt::Write as _;
use std::path::Path;

use crate::analyzer;
use crate::cli::GraphFormat;
use crate::exit::Exit;
use crate::plan::{Body, Plan, PlanStep};

pub fn graph(playbook: &Path, format: GraphFormat) -> Exit {
    let plan = match analyzer::analyze(playbook, &analyzer::Options::default()) {
        Ok(p) => p,
        Err(d) => {
            eprintln!("{d}");
            return Exit::Invalid;
        }
    };
    let flow = Flow::of(&plan);
    say!(raw: match format {
        GraphFormat::Mermaid => flow.mermaid(),
        GraphFormat::Dot => flow.dot(),
    });
    Exit::Success
}

/// The picture, independent of its syntax: nested groups of nodes, and edges.
struct Flow {
    root: Group,
    edges: Vec<(String, String, Edge)>,
}

struct Group {
    id: String,
    label: String,
    nodes: Vec<(String, String)>,
    groups: Vec<Group>,
}

#[derive(Clone, Copy, PartialEq)]
enum Edge {
    Next,
    Fallback,
    Always,
}

/// Node ids safe in both syntaxes.
fn node_id(step_id: &str) -> String {
    let mut id: String = step_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    id.insert_str(0, "s_");
    id
}

impl Flow {
    fn of(plan: &Plan) -> Flow {
        let mut flow = Flow {
            root: Group {
                id: "root".into(),
                label: plan.name.clone(),
                nodes: Vec::new(),
                groups: Vec::new(),
            },
            edges: Vec::new(),
        };
        let mut root = std::mem::replace(
            &mut flow.root,
            Group {
                id: String::new(),
                label: String::new(),
                nodes: Vec::new(),
                groups: Vec::new(),
            },
        );
        let mut prev = flow.chain(&mut root, &plan.steps, Vec::new());
        for (i, s) in plan.always.iter().enumerate() {
            let (first, ends) = flow.step(&mut root, s);
            let kind = if i == 0 { Edge::Always } else { Edge::Next };
            for p in &prev {
                flow.edges.push((p.clone(), first.clone(), kind));
            }
            prev = ends;
        }
        flow.root = root;
        flow
    }

    /// Adds steps in order into `group`, each reached from every exit of the
    /// one before; returns the exits of the last.
    fn chain(
        &mut self,
        group: &mut Group,
        steps: &[PlanStep],
        mut prev: Vec<String>,
    ) -> Vec<String> {
        for s in steps {
            let (first, exits) = self.step(group, s);
            for p in prev {
                self.edges.push((p, first.clone(), Edge::Next));
            }
            prev = exits;
        }
        prev
    }

    /// Adds one step and its fallbacks; returns its entry, and its exits:
    /// its own and those of each fallback that may rescue it.
    fn step(&mut self, group: &mut Group, s: &PlanStep) -> (String, Vec<String>) {
        let id = node_id(&s.id);
        let label = if s.name == s.local_id {
            s.local_id.clone()
        } else {
            format!("{}: {}", s.local_id, s.name)
        };
        let (entry, exit) = match &s.body {
            Body::Action { action, .. } => {
                group
                    .nodes
                    .push((id.clone(), format!("{label}\n[{action}]")));
                (id.clone(), id.clone())
            }
            Body::Include {
                file,
                steps,
                always,
                ..
            } => {
                let name = file.file_name().map_or_else(
                    || file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let mut inner = Group {
                    id: format!("g_{id}"),
                    label: format!("{label} ({name})"),
                    nodes: Vec::new(),
                    groups: Vec::new(),
                };
                let start = format!("{id}_in");
                inner.nodes.push((start.clone(), "start".into()));
                let last = self.chain(&mut inner, steps, vec![start.clone()]);
                let last = self.chain(&mut inner, always, last);
                group.groups.push(inner);
                let exit = last
                    .into_iter()
                    .next_back()
                    .unwrap_or_else(|| start.clone());
                (start, exit)
            }
        };
        let mut exits = vec![exit.clone()];
        let mut failed = exit;
        for f in &s.fallback {
            let (f_entry, f_exits) = self.step(group, f);
            self.edges.push((failed.clone(), f_entry, Edge::Fallback));
            failed = f_exits.last().cloned().unwrap_or_default();
            exits.extend(f_exits);
        }
        (entry, exits)
    }

    fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        fn group(out: &mut String, g: &Group, depth: usize, top: bool) {
            let pad = "  ".repeat(depth);
            if !top {
                let _ = writeln!(out, "{pad}subgraph {}[\"{}\"]", g.id, escape(&g.label));
            }
            for (id, label) in &g.nodes {
                let _ = writeln!(
                    out,
                    "{pad}  {id}[\"{}\"]",
                    escape(&label.replace('\n', "<br/>"))
                );
            }
            for inner in &g.groups {
                group(out, inner, depth + 1, false);
            }
            if !top {
                let _ = writeln!(out, "{pad}end");
            }
        }
        group(&mut out, &self.root, 0, true);
        for (from, to, kind) in &self.edges {
            let arrow = match kind {
                Edge::Next => "-->".to_owned(),
                Edge::Fallback => "-. fails .->".to_owned(),
                Edge::Always => "== always ==>".to_owned(),
            };
            let _ = writeln!(out, "  {from} {arrow} {to}");
        }
        out
    }

    fn dot(&self) -> String {
        let mut out = format!(
            "digraph runbook {{\n  label=\"{}\";\n  labelloc=t;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\"];\n",
            escape(&self.root.label)
        );
        fn group(out: &mut String, g: &Group, depth: usize, top: bool) {
            let pad = "  ".repeat(depth + 1);
            if !top {
                let _ = writeln!(
                    out,
                    "{pad}subgraph cluster_{} {{\n{pad}  label=\"{}\";\n{pad}  style=dashed;",
                    g.id,
                    escape(&g.label)
                );
            }
            for (id, label) in &g.nodes {
                let shape = if label == "start" {
                    ", shape=point"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{pad}  {id} [label=\"{}\"{shape}];",
                    escape(label).replace('\n', "\\n")
                );
            }
            for inner in &g.groups {
                group(out, inner, depth + 1, false);
            }
            if !top {
                let _ = writeln!(out, "{pad}}}");
            }
        }
        group(&mut out, &self.root, 0, true);
        for (from, to, kind) in &self.edges {
            let style = match kind {
                Edge::Next => "",
                Edge::Fallback => " [style=dashed, color=\"#c0392b\", label=\"fails\"]",
                Edge::Always => " [style=bold, color=\"#2c3e50\", label=\"always\"]",
            };
            let _ = writeln!(out, "  {from} -> {to}{style};");
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "'")
}
