//! `notify.email`: renders a template into a real RFC 5322 message, always
//! writes it to the run's outbox as a `.eml` file first, then delivers it by
//! the transport the playbook chooses. A delivery that fails leaves the
//! message in the outbox and says why. The SMTP password is read from the
//! environment (`RUNBOOK_SECRET_SMTP_PASSWORD`), never from the playbook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport as _};
use serde::Deserialize;

use super::{Action, Context, Failure, Outputs, Text};

/// The environment variable holding the SMTP password.
pub const SMTP_PASSWORD_ENV: &str = "RUNBOOK_SECRET_SMTP_PASSWORD";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NotifyEmail")]
pub struct Email {
    /// The body: a template file, relative to the playbook's directory.
    template: PathBuf,
    subject: String,
    to: Recipients,
    #[serde(default)]
    cc: Recipients,
    from: String,
    /// Files to attach (e.g. the run's report.md).
    #[serde(default)]
    attach: Vec<PathBuf>,
    #[serde(default)]
    transport: TransportKind,
    #[serde(default)]
    smtp_host: Option<String>,
    #[serde(default)]
    smtp_port: Option<Text>,
    #[serde(default)]
    smtp_user: Option<String>,
    #[serde(default)]
    smtp_tls: Option<String>,
    /// The program for `transport: sendmail` (default `sendmail`).
    #[serde(default)]
    sendmail_command: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    /// The outbox only.
    #[default]
    File,
    Smtp,
    Sendmail,
}

/// A list, or one string of addresses separated by commas.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Recipients {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Recipients {
    fn list(&self) -> Vec<String> {
        let all: Vec<&str> = match self {
            Recipients::None => Vec::new(),
            Recipients::One(s) => s.split(',').collect(),
            Recipients::Many(v) => v.iter().flat_map(|s| s.split(',')).collect(),
        };
        all.into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn mailbox(address: &str, role: &str) -> Result<Mailbox, Failure> {
    address
        .parse::<Mailbox>()
        .map_err(|e| Failure::failed(format!("{role} address `{address}` is not valid: {e}")))
}

impl Email {
    fn message(&self, subject: &str, body: &str) -> Result<Message, Failure> {
        let to = self.to.list();
        if to.is_empty() {
            return Err(Failure::failed(
                "the message has no recipient: set `to` (e.g. --var notify_to=oncall@example.com)",
            ));
        }
        let mut builder = Message::builder()
            .from(mailbox(&self.from, "from")?)
            .subject(subject.to_owned())
            .date_now()
            .message_id(None);
        for a in &to {
            builder = builder.to(mailbox(a, "to")?);
        }
        for a in self.cc.list() {
            builder = builder.cc(mailbox(&a, "cc")?);
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned());
        let built = if self.attach.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for path in &self.attach {
                let bytes = std::fs::read(path).map_err(|e| {
                    Failure::failed(format!("cannot attach {}: {e}", path.display()))
                })?;
                let name = path.file_name().map_or_else(
                    || "attachment".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let kind = if name.ends_with(".md") {
                    "text/markdown; charset=utf-8"
                } else {
                    "application/octet-stream"
                };
                let kind = ContentType::parse(kind).map_err(|e| Failure::failed(e.to_string()))?;
                parts = parts.singlepart(Attachment::new(name).body(bytes, kind));
            }
            builder.multipart(parts)
        };
        built.map_err(|e| Failure::failed(format!("cannot build the message: {e}")))
    }

    fn deliver(&self, message: &Message) -> Result<String, Failure> {
        match self.transport {
            TransportKind::File => Ok("written to the outbox only (transport: file)".into()),
            TransportKind::Sendmail => {
                let command = self.sendmail_command.as_deref().unwrap_or("sendmail");
                SendmailTransport::new_with_command(command)
                    .send(message)
                    .map(|()| format!("handed to `{command}`"))
                    .map_err(|e| Failure::failed(format!("sendmail (`{command}`) failed: {e}")))
            }
            TransportKind::Smtp => {
                let host = self
                    .smtp_host
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| Failure::failed("transport smtp needs `smtp_host`"))?;
                let tls = self.smtp_tls.as_deref().unwrap_or("starttls");
                let builder = match tls {
                    "starttls" => SmtpTransport::starttls_relay(host),
                    "tls" => SmtpTransport::relay(host),
                    "none" => Ok(SmtpTransport::builder_dangerous(host)),
                    other => {
                        return Err(Failure::failed(format!(
                            "smtp_tls is `{other}`; use starttls, tls or none"
                        )))
                    }
                }
                .map_err(|e| Failure::failed(format!("SMTP server {host}: {e}")))?;
                let default_port = match tls {
                    "tls" => 465,
                    "none" => 25,
                    _ => 587,
                };
                let port = match &self.smtp_port {
                    Some(p) if !p.0.is_empty() => p.0.parse::<u16>().map_err(|_| {
                        Failure::failed(format!("smtp_port `{}` is not a port number", p.0))
                    })?,
                    _ => default_port,
                };
                let mut builder = builder.port(port).timeout(Some(Duration::from_secs(30)));
                if let Some(user) = self.smtp_user.as_deref().filter(|u| !u.is_empty()) {
                    let password = crate::secret::get("smtp_password").ok_or_else(|| {
                        Failure::failed(format!("smtp_user is set but {SMTP_PASSWORD_ENV} is not: put the password in that environment variable"))
                    })?;
                    builder = builder.credentials(Credentials::new(user.to_owned(), password));
                }
                builder
                    .build()
                    .send(message)
                    .map(|r| format!("accepted by {host}:{port} ({})", r.code()))
                    .map_err(|e| {
                        Failure::failed(format!("SMTP delivery to {host}:{port} failed: {e}"))
                    })
            }
        }
    }
}

impl Action for Email {
    fn invalidates_reads(&self) -> bool {
        false
    }

    fn mutates(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let mut d = format!(
            "e-mail \"{}\" to {}",
            self.subject,
            self.to.list().join(", ")
        );
        if !self.cc.list().is_empty() {
            d.push_str(&format!(" (cc {})", self.cc.list().join(", ")));
        }
        d.push_str(&format!(" via {:?}", self.transport).to_lowercase());
        d
    }

    fn template_files(&self) -> Vec<&Path> {
        vec![self.template.as_path()]
    }

    fn foreseen_warning(&self) -> Option<&'static str> {
        (self.transport == TransportKind::File).then_some(OUTBOX_ONLY)
    }

    fn preview(&self, ctx: &Context<'_>) -> Result<String, Failure> {
        let body = (ctx.render_file)(&self.template).map_err(Failure::Failed)?;
        let first = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Ok(format!(
            "{} — body from {}: \"{}…\"",
            self.describe(),
            self.template.display(),
            first.trim()
        ))
    }

    fn run(&self, ctx: &Context<'_>) -> Result<Outputs, Failure> {
        let body = (ctx.render_file)(&self.template).map_err(Failure::Failed)?;
        // Whatever the message says, no secret leaves in it: body, subject and file name.
        let subject = (ctx.redact)(&self.subject);
        let message = self.message(&subject, &(ctx.redact)(&body))?;
        let formatted = message.formatted();
        let outbox = ctx
            .run_dir
            .as_ref()
            .map(|d| d.join("outbox"))
            .ok_or_else(|| {
                Failure::failed("an e-mail needs a run directory for its outbox copy")
            })?;
        let path = write_outbox(&outbox, &subject, &formatted)?;
        let mut out = Outputs::new();
        out.insert("outbox_file".into(), path.display().to_string().into());
        out.insert("to".into(), self.to.list().into());
        out.insert("subject".into(), subject.into());
        let delivery = self.deliver(&message);
        out.insert(
            "delivered".into(),
            (delivery.is_ok() && self.transport != TransportKind::File).into(),
        );
        match delivery {
            Ok(how) => {
                if let Some(warning) = self.foreseen_warning() {
                    out.insert(super::WARNING.into(), warning.into());
                }
                out.insert("delivery".into(), how.into());
                Ok(out)
            }
            Err(e) => Err(Failure::Failed(format!(
                "{e} (the message is in {})",
                path.display()
            ))),
        }
    }
}

/// What a mail with `transport: file` falls short of.
const OUTBOX_ONLY: &str = "not sent: written to the outbox only (transport: file)";

/// `outbox/NN-subject.eml`, numbered in the order written, never overwritten.
fn write_outbox(outbox: &Path, subject: &str, bytes: &[u8]) -> Result<PathBuf, Failure> {
    std::fs::create_dir_all(outbox)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", outbox.display())))?;
    let written = std::fs::read_dir(outbox).map(Iterator::count).unwrap_or(0);
    let slug: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-");
    for n in written + 1..written + 1000 {
        let path = outbox.join(format!("{n:02}-{slug}.eml"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(bytes)
                    .and_then(|()| crate::shadow::sync(&f, &path))
                    .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Failure::failed(format!("writing {}: {e}", path.display()))),
        }
    }
    Err(Failure::failed(format!("{} is full", outbox.display())))
}
