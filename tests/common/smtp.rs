//! A real SMTP server on 127.0.0.1 (mailin), in the test's process: it takes every message
//! the server under test relays and keeps it, for the test to read.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// One relayed message: its recipients and its text (headers and body, transfer-decoded
/// enough to read links: quoted-printable soft breaks joined, `=3D` as `=`).
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub to: Vec<String>,
    pub text: String,
}

#[derive(Clone, Default)]
struct Keeper {
    inbox: Arc<Mutex<Vec<Received>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Keeper {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let raw = String::from_utf8_lossy(&self.data).to_string();
        let text = raw.replace("=\r\n", "").replace("=3D", "=");
        self.inbox.lock().unwrap().push(Received {
            to: std::mem::take(&mut self.to),
            text,
        });
        mailin_embedded::response::OK
    }
}

/// The mail server; it runs until the test process ends.
pub(crate) struct Mailbox {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Received>>>,
}

impl Mailbox {
    pub(crate) fn start() -> Mailbox {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let keeper = Keeper::default();
        let inbox = keeper.inbox.clone();
        let mut server = mailin_embedded::Server::new(keeper);
        server
            .with_name("mail.test")
            .with_num_threads(2)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Mailbox { port, inbox }
    }

    /// How many messages went to `to`.
    pub(crate) fn count(&self, to: &str) -> usize {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .count()
    }

    /// The `n`th message (from 1) to `to`, waiting up to ten seconds for it.
    pub(crate) async fn nth(&self, to: &str, n: usize) -> Received {
        for _ in 0..200 {
            let found = self
                .inbox
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.to.iter().any(|t| t == to))
                .nth(n - 1)
                .cloned();
            if let Some(m) = found {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no message {n} to {to} within 10 s");
    }
}

impl Received {
    /// The first `http` link in the text.
    pub(crate) fn link(&self) -> String {
        let start = self.text.find("http").expect("a link");
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    /// The token after "code there: ".
    pub(crate) fn code(&self) -> String {
        let at = self.text.find("code there: ").expect("a code") + "code there: ".len();
        self.text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}
