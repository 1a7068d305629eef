//! `http.get`: asks a URL and checks the status, with a timeout. For
//! probing that an app answers after a restart.

use std::time::Duration;

use serde::Deserialize;

use super::{ellipsize, Action, Context, Failure, Outputs};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpGet")]
pub struct Get {
    /// One URL, or several that must all answer.
    url: Urls,
    /// Statuses that count as success (default: 200 only).
    #[serde(default = "default_expect")]
    expect_status: Vec<u16>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    fn list(&self) -> Vec<&str> {
        match self {
            Urls::One(u) => vec![u.as_str()],
            Urls::Many(us) => us.iter().map(String::as_str).collect(),
        }
    }
}

fn default_expect() -> Vec<u16> {
    vec![200]
}

impl Action for Get {
    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("GET {}", self.url.list().join(", "))
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let timeout = ctx.timeout.unwrap_or(Duration::from_secs(10));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut statuses = serde_json::Map::new();
        let mut out = Outputs::new();
        for url in self.url.list() {
            let mut response = agent
                .get(url)
                .call()
                .map_err(|e| Failure::failed(format!("GET {url}: {e}")))?;
            let status = response.status().as_u16();
            let body = response
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .unwrap_or_default();
            statuses.insert(url.to_owned(), status.into());
            out.insert("status".into(), status.into());
            out.insert("body".into(), ellipsize(&body, 2000).into());
            if !self.expect_status.contains(&status) {
                return Err(Failure::failed(format!(
                    "GET {url} answered {status}, expected {:?}",
                    self.expect_status
                )));
            }
        }
        out.insert("statuses".into(), statuses.into());
        Ok(out)
    }
}
