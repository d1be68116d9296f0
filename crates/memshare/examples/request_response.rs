//! A request/response service with three client processes: the parent
//! creates the service "calc" (a name with this process's id, so that two
//! runs do not meet) and answers sums; three children (this same program,
//! started again with the argument `client`) connect by name and each send
//! ten requests, two at a time, checking every answer. Each answer reaches
//! the request it answers, whatever order the server answers in.
//!
//! ```text
//! cargo run -p memshare --example request_response
//! ```

use std::process::Command;

use memshare::rpc::{Client, Server, ServerConfig};
use memshare::Result;

/// Requests each client sends.
const CALLS: u64 = 10;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("client") {
        return client(&args.next().expect("the service's name"));
    }
    let name = format!("calc-{}", std::process::id());
    let server = Server::create(&name, ServerConfig::new().max_clients(4).max_in_flight(2))?;
    let exe = std::env::current_exe().expect("the path of this program");
    let mut children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args(["client", &name])
                .spawn()
                .expect("start a client")
        })
        .collect();
    // Answer every request ("a+b" -> the sum), holding two at a time and
    // answering the second first.
    let mut answered = 0;
    let mut held = Vec::new();
    while answered < 3 * CALLS {
        let request = server.recv_timeout(std::time::Duration::from_secs(30))?;
        held.push(request);
        if held.len() == 2 || answered + held.len() as u64 == 3 * CALLS {
            while let Some(request) = held.pop() {
                let text = String::from_utf8_lossy(&request).into_owned();
                let sum: u64 = text.split('+').map(|n| n.parse::<u64>().unwrap_or(0)).sum();
                request.respond(sum.to_string().as_bytes())?;
                answered += 1;
            }
        }
    }
    for child in &mut children {
        let status = child.wait().expect("wait for a client");
        assert!(status.success(), "a client failed: {status}");
    }
    println!("server: answered {answered} requests from 3 clients");
    Ok(())
}

fn client(name: &str) -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let mut client = Client::connect_timeout(name, std::time::Duration::from_secs(30))?;
    for i in (0..CALLS).step_by(2) {
        // Two in flight at once.
        let first = client.send_request(format!("{i}+100").as_bytes())?;
        let second = client.send_request(format!("{}+1000", i + 1).as_bytes())?;
        let a = String::from_utf8_lossy(&client.receive_response(&first)?).into_owned();
        let b = String::from_utf8_lossy(&client.receive_response(&second)?).into_owned();
        assert_eq!((a, b), ((i + 100).to_string(), (i + 1001).to_string()));
    }
    println!("client: {CALLS} answers, each to its own request");
    Ok(())
}
