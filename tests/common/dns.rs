//! A DNS server on loopback (UDP) answering from a table: the Internet's DNS, for server
//! discovery in tests. Every name has the address 127.0.0.1; SRV records are those given.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        rdata::{A, SRV},
        Name, RData, Record, RecordType,
    },
};
use tokio::net::UdpSocket;

/// Starts the server with `srv` (`_matrix-fed._tcp.host` → target, port); answers its address.
pub(crate) async fn start(srv: &[(&str, &str, u16)]) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let table: Arc<HashMap<String, (String, u16)>> = Arc::new(
        srv.iter()
            .map(|(name, target, port)| (name.to_string(), (target.to_string(), *port)))
            .collect(),
    );
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let answer = answer(&query, &table);
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

fn answer(query: &Message, table: &HashMap<String, (String, u16)>) -> Message {
    let mut out = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    out.metadata.recursion_desired = true;
    out.metadata.recursion_available = true;
    out.metadata.authoritative = true;
    let mut found = true;
    for q in &query.queries {
        out.add_query(q.clone());
        let name = q.name().clone();
        let key = name.to_ascii();
        let key = key.trim_end_matches('.');
        match q.query_type() {
            RecordType::A => {
                out.add_answer(Record::from_rdata(
                    name,
                    60,
                    RData::A(A::from(std::net::Ipv4Addr::LOCALHOST)),
                ));
            }
            RecordType::SRV => match table.get(key) {
                Some((target, port)) => {
                    let target = Name::from_ascii(format!("{target}.")).unwrap();
                    let srv = SRV::new(10, 5, *port, target);
                    out.add_answer(Record::from_rdata(name, 60, RData::SRV(srv)));
                }
                None => found = false,
            },
            // No AAAA records: an empty answer.
            _ => {}
        }
    }
    if !found {
        out.metadata.response_code = ResponseCode::NXDomain;
    }
    out
}
