//! Loopback receivers for alert channels: a webhook receiver that records
//! what it was sent and can answer an error or stop listening and listen
//! again on the same port, and an SMTP sink that speaks just enough SMTP
//! (EHLO, MAIL, RCPT, DATA, QUIT; no TLS, no AUTH) to record each mail.
//! Each runs on a runtime of its own thread, so tests of any kind can use it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: String,
    pub body: serde_json::Value,
    /// What it answered.
    pub status: u16,
    /// Header lines, lowercase names.
    pub headers: Vec<(String, String)>,
}

enum Cmd {
    Open(std_mpsc::Sender<SocketAddr>),
    Close(std_mpsc::Sender<()>),
}

/// A server on its own thread whose listener can be closed and reopened on
/// the same port; each connection goes to `handle`.
struct Listener {
    addr: SocketAddr,
    cmds: tokio::sync::mpsc::UnboundedSender<Cmd>,
}

impl Listener {
    fn start<F, Fut>(handle: F) -> Listener
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (cmds, mut rx) = tokio::sync::mpsc::unbounded_channel::<Cmd>();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let mut accept: Option<tokio::task::JoinHandle<()>> = None;
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Cmd::Open(reply) => {
                            let listener = TcpListener::bind(addr).await.unwrap();
                            addr = listener.local_addr().unwrap();
                            let handle = handle.clone();
                            accept = Some(tokio::spawn(async move {
                                while let Ok((tcp, _)) = listener.accept().await {
                                    tokio::spawn(handle(tcp));
                                }
                            }));
                            reply.send(addr).unwrap();
                        }
                        Cmd::Close(reply) => {
                            if let Some(task) = accept.take() {
                                task.abort();
                                let _ = task.await;
                            }
                            reply.send(()).unwrap();
                        }
                    }
                }
            });
        });
        let (tx, rx) = std_mpsc::channel();
        cmds.send(Cmd::Open(tx)).unwrap();
        Listener {
            addr: rx.recv().unwrap(),
            cmds,
        }
    }

    fn close(&self) {
        let (tx, rx) = std_mpsc::channel();
        self.cmds.send(Cmd::Close(tx)).unwrap();
        rx.recv().unwrap();
    }

    fn reopen(&self) {
        let (tx, rx) = std_mpsc::channel();
        self.cmds.send(Cmd::Open(tx)).unwrap();
        assert_eq!(rx.recv().unwrap(), self.addr, "reopened on another port");
    }
}

/// A webhook receiver: every POST is recorded and answered with the status
/// set by [`WebhookSink::answer`] (200 at first), connection closed.
pub struct WebhookSink {
    pub addr: SocketAddr,
    listener: Listener,
    status: Arc<AtomicU16>,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        let status = Arc::new(AtomicU16::new(200));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let (s, h) = (status.clone(), hooks.clone());
        let listener = Listener::start(move |tcp| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                let _ = serve_hook(tcp, &s, &h).await;
            }
        });
        WebhookSink {
            addr: listener.addr,
            listener,
            status,
            hooks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status of the next answers.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`WebhookSink::reopen`].
    pub fn close(&self) {
        self.listener.close();
    }

    /// Listens again, on the same port.
    pub fn reopen(&self) {
        self.listener.reopen();
    }

    /// Every request so far.
    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }

    /// The bodies of the requests answered 2xx.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.hooks()
            .into_iter()
            .filter(|h| (200..300).contains(&h.status))
            .map(|h| h.body)
            .collect()
    }
}

async fn serve_hook(
    tcp: TcpStream,
    status: &AtomicU16,
    hooks: &Mutex<Vec<Hook>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    let status = status.load(Ordering::SeqCst);
    hooks.lock().unwrap().push(Hook {
        path,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status,
        headers,
    });
    let answer = format!(
        "HTTP/1.1 {status} Answer\r\ncontent-length: 9\r\nconnection: close\r\n\r\nsink said"
    );
    let mut tcp = r.into_inner();
    tcp.write_all(answer.as_bytes()).await?;
    tcp.shutdown().await
}

/// One mail the SMTP sink received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// The value of a header of the message.
    pub fn header(&self, name: &str) -> Option<String> {
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
    }
}

/// A loopback SMTP server recording every mail.
pub struct SmtpSink {
    pub addr: SocketAddr,
    _listener: Listener,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        let listener = Listener::start(move |tcp| {
            let m = m.clone();
            async move {
                let _ = serve_smtp(tcp, &m).await;
            }
        });
        SmtpSink {
            addr: listener.addr,
            _listener: listener,
            mails,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn serve_smtp(tcp: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let (read, mut w) = tcp.into_split();
    let mut r = BufReader::new(read);
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_owned();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            w.write_all(b"354 go on\r\n").await?;
            let data = read_data(&mut r).await?;
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 queued as 1\r\n"
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper.starts_with("HELO") || upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 not here\r\n"
        };
        w.write_all(answer).await?;
    }
}

/// The DATA lines up to the lone `.`, dot-unstuffed.
async fn read_data(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(data);
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l == "." {
            return Ok(data);
        }
        data.push_str(l.strip_prefix('.').unwrap_or(l));
        data.push('\n');
    }
}
