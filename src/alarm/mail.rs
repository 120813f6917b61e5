//! Alarm mails through an SMTP server with `lettre`: plain SMTP (no TLS, no
//! authentication), as an SE Manager's mail configuration on a management LAN. A mail
//! counts as delivered when the SMTP server accepted it (250 after DATA).

use crate::api::MailTarget;
use crate::store::Event;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{Message, SmtpTransport, Transport};
use std::time::Duration;

/// How long one SMTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address or the message could not be built.
    #[error("building the mail: {0}")]
    Build(String),
    /// The SMTP exchange failed (connection, refusal).
    #[error("SMTP {host}:{port}: {source}")]
    Smtp {
        /// Server.
        host: String,
        /// Port.
        port: u16,
        /// What went wrong.
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// The subject line: priority, component, object, reason.
pub fn subject(ev: &Event) -> String {
    format!("[sectl {}] {} {}: {}", ev.priority, ev.component, ev.object, ev.reason)
}

/// The body: every field of the event, one per line.
pub fn body(ev: &Event) -> String {
    format!(
        "Event:     {}\nTime:      {}\nPriority:  {}\nComponent: {}\nObject:    {}\nReason:    {}\nMessage:   {}\n",
        ev.seq, ev.time, ev.priority, ev.component, ev.object, ev.reason, ev.message
    )
}

fn mailbox(a: &crate::api::checked::MailAddress) -> Result<Mailbox, MailError> {
    a.as_str().parse::<Mailbox>().map_err(|e| MailError::Build(format!("{a}: {e}")))
}

/// Builds and sends the mail of one event.
pub fn send(t: &MailTarget, ev: &Event) -> Result<(), MailError> {
    let mut b = Message::builder().from(mailbox(&t.from)?).subject(subject(ev));
    for to in &t.to {
        b = b.to(mailbox(to)?);
    }
    let msg = b.header(ContentType::TEXT_PLAIN).body(body(ev)).map_err(|e| MailError::Build(e.to_string()))?;
    let transport =
        SmtpTransport::builder_dangerous(t.smtp_host.as_str()).port(t.smtp_port.get()).timeout(Some(TIMEOUT)).build();
    transport.send(&msg).map(|_| ()).map_err(|source| MailError::Smtp {
        host: t.smtp_host.to_string(),
        port: t.smtp_port.get(),
        source,
    })
}
