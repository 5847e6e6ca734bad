//! The mail relay, from `[email]`: the Matrix API's address validation mails through it, and
//! so do Sandcat verification codes (which go to the log when no relay is configured).

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use sandcat_backends::smtp::{SmtpMailer, SmtpOptions, SmtpSecurity};
use sandcat_core::ports::{Mail, Mailer};

use crate::config::{self, Config};

/// The relay's mailer; `None` when `[email] smtp_host` is not set.
pub(crate) fn mailer(config: &Config, server_name: &str) -> Result<Option<Arc<dyn Mailer>>> {
    let e = &config.email;
    if e.smtp_host.is_empty() {
        return Ok(None);
    }
    let from = if e.from.is_empty() {
        format!(
            "Sandcat <noreply@{}>",
            server_name.split(':').next().unwrap_or(server_name)
        )
    } else {
        e.from.clone()
    };
    let options = SmtpOptions {
        host: e.smtp_host.clone(),
        port: e.smtp_port,
        security: match e.smtp_security {
            config::SmtpSecurity::None => SmtpSecurity::None,
            config::SmtpSecurity::Starttls => SmtpSecurity::StartTls,
            config::SmtpSecurity::Tls => SmtpSecurity::Tls,
        },
        username: e.smtp_user.clone(),
        password: e.smtp_password.clone(),
        from,
        timeout: Duration::from_secs(30),
    };
    let mailer = SmtpMailer::new(&options).map_err(|e| anyhow::anyhow!("[email]: {e}"))?;
    Ok(Some(Arc::new(mailer)))
}

/// Sandcat verification codes, mailed through the relay (the native API hands a code over
/// and answers at once; a relay that fails is logged).
pub(crate) struct MailedCodes {
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) server_name: String,
}

impl sandcat_api::Mailer for MailedCodes {
    fn send_code(&self, email: &str, code: &str) {
        let mail = Mail {
            to: email.to_owned(),
            subject: format!("Your verification code for {}", self.server_name),
            text: format!(
                "Your verification code is {code}. It works for 5 minutes.\n\n\
                 If you did not ask for it, ignore this message.\n"
            ),
        };
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(mail).await {
                tracing::warn!(error = %e, "mailing a Sandcat verification code");
            }
        });
    }
}
