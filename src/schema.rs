//! The playbook format as a JSON Schema (draft-07, what editors' YAML
//! language servers read), for completion and validation while editing.
//! The arguments of every action are generated from the same Rust types
//! the analyzer checks them with; the playbook and step keys come from the
//! parser's own lists, and a test keeps the two in step.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value as Json};

use crate::action::{self, Call};
use crate::playbook::{CHECK_KEYS, PLAYBOOK_KEYS, STEP_KEYS, VAR_KEYS};

/// Where the shipped playbooks find the schema, relative to themselves.
pub const SHIPPED_PATH: &str = "../docs/playbook.schema.json";

pub fn playbook_schema() -> Json {
    let mut generator = SchemaSettings::draft07().into_generator();
    let call = generator.root_schema_for::<Call>().to_value();
    let mut definitions: Map<String, Json> = generator.take_definitions(true).into_iter().collect();
    if let Some(Json::Object(defs)) = call.get("definitions") {
        definitions.extend(defs.clone());
    }
    // Every string in a playbook is a template, so any argument may be
    // one (`transport: "{{ transport }}"`): its type is known only once it
    // is rendered, and `runbook check` judges it then.
    for def in definitions.values_mut() {
        allow_templates(def);
    }

    // Each variant of `Call` pairs an action name with its arguments.
    let mut by_action = Vec::new();
    for variant in call["oneOf"].as_array().into_iter().flatten() {
        let name = variant["properties"]["action"]["const"]
            .as_str()
            .or_else(|| variant["properties"]["action"]["enum"][0].as_str());
        if let Some(name) = name {
            by_action.push((name.to_owned(), variant["properties"]["with"].clone()));
        }
    }
    let arguments: Vec<Json> = by_action
        .iter()
        .map(|(name, with)| {
            json!({
                "if": {"properties": {"action": {"const": name}}, "required": ["action"]},
                "then": {"properties": {"with": with}}
            })
        })
        .collect();
    let action_names: Vec<&str> = action::NAMES.to_vec();

    let duration = json!({
        "description": "a duration: 500ms, 30s, 5m, 1h 30m, or a number of seconds",
        "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}]
    });
    let checks = json!({"type": "array", "items": {"$ref": "#/definitions/check"}});
    definitions.insert("duration".into(), duration);
    definitions.insert(
        "check".into(),
        json!({
            "description": "an expression that must be true, or a read-only action that must succeed",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "description": "how reports name the check"},
                        "that": {"type": "string", "description": "an expression that must be true"},
                        "action": {"enum": action_names, "description": "a read-only action"},
                        "with": {"type": "object", "description": "the action's arguments"},
                        "expect": {"type": "string", "description": "an expression over `result`, the action's outputs"}
                    },
                    "allOf": arguments
                }
            ]
        }),
    );
    definitions.insert(
        "variable".into(),
        json!({
            "description": "a default value (a template over the variables above), or a declaration",
            "anyOf": [
                {"not": {"type": "object"}},
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "default": {"description": "the default value"},
                        "required": {"type": "boolean", "description": "a run needs a value (--var NAME=VALUE)"},
                        "secret": {"type": "boolean", "description": "written as *** everywhere"},
                        "description": {"type": "string"},
                        "choices": {"type": "array", "items": {"type": "string"}},
                        "rehearsal": {"type": "string", "description": "the value a rehearsal (--rehearse) gives it, unless given with --var"}
                    }
                }
            ]
        }),
    );
    definitions.insert(
        "step".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["id"],
            "properties": {
                "id": {"type": "string", "description": "unique in the playbook; reports and --fail use it"},
                "name": {"type": "string"},
                "action": {"enum": action_names, "description": "the action (docs/actions.md)"},
                "with": {"type": "object", "description": "the action's arguments"},
                "playbook": {"type": "string", "description": "include another playbook, relative to this one"},
                "vars": {"type": "object", "description": "variables for the included playbook"},
                "when": {"type": "string", "description": "an expression; false skips the step"},
                "require": checks,
                "verify": checks,
                "skip_if": checks,
                "fallback": {"type": "array", "items": {"$ref": "#/definitions/step"}, "description": "tried in order if the step fails"},
                "retries": {"type": "integer", "minimum": 0, "maximum": 1000},
                "retry_delay": {"$ref": "#/definitions/duration"},
                "timeout": {"$ref": "#/definitions/duration"},
                "deadline": {"$ref": "#/definitions/duration"},
                "confirm": {"type": ["string", "boolean"], "description": "a question put to the operator before the action"}
            },
            "oneOf": [{"required": ["action"]}, {"required": ["playbook"]}],
            "allOf": arguments
        }),
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "runbook playbook",
        "description": "A runbook playbook: ordered steps with checks, fallbacks and always-steps. See docs/playbooks.md.",
        "type": "object",
        "additionalProperties": false,
        "required": ["steps"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "vars": {"type": "object", "additionalProperties": {"$ref": "#/definitions/variable"}},
            "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}},
            "always": {"type": "array", "items": {"$ref": "#/definitions/step"}},
            "facts": {
                "type": "object",
                "description": "named facts about the run, each an expression over the steps' outputs; templates read run.facts.NAME",
                "additionalProperties": {"type": "string"}
            },
            "deadline": {
                "type": "string",
                "description": "how long the run has: a template over the variables that renders to a duration (15m, 1h 30m), or to nothing for no deadline"
            },
            "report": {
                "type": "string",
                "description": "the template of the run's report.md, relative to the playbook; it reads run, the run summary (default: the built-in templates/report.md)"
            }
        },
        "definitions": definitions
    })
}

/// The schema as committed in docs/: pretty, with a final newline.
pub fn rendered() -> String {
    let mut s = serde_json::to_string_pretty(&playbook_schema()).unwrap_or_default();
    s.push('\n');
    s
}

/// The keys each part of the format has, as the parser knows them.
pub fn parser_keys() -> [(&'static str, &'static [&'static str]); 4] {
    [
        ("playbook", PLAYBOOK_KEYS),
        ("step", STEP_KEYS),
        ("check", CHECK_KEYS),
        ("variable", VAR_KEYS),
    ]
}

/// A string holding `{{ … }}`: a template, whatever type it renders to.
fn template() -> Json {
    json!({"type": "string", "pattern": "\\{\\{"})
}

/// Lets every property and list item of an argument schema be a template.
fn allow_templates(schema: &mut Json) {
    if let Some(Json::Object(props)) = schema.get_mut("properties") {
        for p in props.values_mut() {
            allow_templates(p);
            *p = json!({"anyOf": [p.take(), template()]});
        }
    }
    if let Some(items) = schema.get_mut("items") {
        allow_templates(items);
        *items = json!({"anyOf": [items.take(), template()]});
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Json::Array(alternatives)) = schema.get_mut(key) {
            alternatives.iter_mut().for_each(allow_templates);
        }
    }
}
