//! `http.get`: asks a URL and checks the status, with a timeout. For
//! probing that an app answers after a restart.

use std::time::Duration;

use serde::Deserialize;

use super::{ellipsize, Action, Context, Failure, Outputs};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    url: String,
    /// Statuses that count as success (default: 200 only).
    #[serde(default = "default_expect")]
    expect_status: Vec<u16>,
}

fn default_expect() -> Vec<u16> {
    vec![200]
}

impl Action for Get {
    fn mutates(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("GET {}", self.url)
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let timeout = ctx.timeout.unwrap_or(Duration::from_secs(10));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(&self.url)
            .call()
            .map_err(|e| Failure::failed(format!("GET {}: {e}", self.url)))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        let mut out = Outputs::new();
        out.insert("status".into(), status.into());
        out.insert("body".into(), ellipsize(&body, 2000).into());
        if self.expect_status.contains(&status) {
            Ok(out)
        } else {
            Err(Failure::failed(format!(
                "GET {} answered {status}, expected {:?}",
                self.url, self.expect_status
            )))
        }
    }
}
