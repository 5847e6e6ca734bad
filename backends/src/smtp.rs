//! Mail through an SMTP relay (lettre): plain TCP (a relay on the same host or network),
//! STARTTLS, or TLS from the first byte, with a login when configured.

use std::time::Duration;

use async_trait::async_trait;
use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::authentication::Credentials,
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use sandcat_core::{
    error::with_causes,
    ports::{Mail, Mailer},
    Error, Result,
};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain TCP: only for a relay on a trusted network (or in tests).
    None,
    /// Plain TCP upgraded with STARTTLS (port 587), refused if the relay cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where and how mail is relayed.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Empty: no login.
    pub username: String,
    pub password: String,
    /// The sender, e.g. `Sandcat <noreply@example.org>`.
    pub from: String,
    /// The most one delivery to the relay may take.
    pub timeout: Duration,
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// Checks the options (the sender's address, the relay's name for TLS); connects only
    /// when mail is sent.
    pub fn new(o: &SmtpOptions) -> Result<Self> {
        let from: Mailbox = o
            .from
            .parse()
            .map_err(|e| Error::invalid_param(format!("email.from {:?}: {e}", o.from)))?;
        let relay_error = |e: lettre::transport::smtp::Error| {
            Error::invalid_param(format!("email.smtp_host {:?}: {e}", o.host))
        };
        let builder = match o.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(o.host.as_str())
            }
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&o.host)
                .map_err(relay_error)?,
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&o.host).map_err(relay_error)?
            }
        };
        let mut builder = builder.port(o.port).timeout(Some(o.timeout));
        if !o.username.is_empty() {
            builder = builder.credentials(Credentials::new(o.username.clone(), o.password.clone()));
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<()> {
        let to: Mailbox = mail.to.parse().map_err(|e| {
            Error::invalid_param(format!("{:?} is not an email address: {e}", mail.to))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text)
            .map_err(|e| Error::internal(format!("building a mail: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| Error::internal(format!("the mail relay: {}", with_causes(&e))))?;
        Ok(())
    }
}
