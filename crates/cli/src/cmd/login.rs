//! `login` and `logout`: registry credentials in the docker config file.

use clap::Args;
use serde_json::json;

use crate::auth;
use crate::client::Client;
use crate::error::{CliError, CmdResult};

/// `login` flags.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Registry server
    pub server: Option<String>,
}

fn prompt(label: &str, hide: bool) -> Result<String, CliError> {
    use std::io::Write;
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let _guard = if hide {
        crate::stdio::RawTerminal::enable().ok()
    } else {
        None
    };
    let mut line = String::new();
    if hide && crate::stdio::is_tty(0) {
        // raw mode: read byte by byte until enter
        use std::io::Read;
        let mut b = [0u8; 1];
        while std::io::stdin()
            .read(&mut b)
            .map_err(CliError::io("reading stdin"))?
            == 1
        {
            match b[0] {
                b'\r' | b'\n' => break,
                3 => return Err(CliError::Usage("interrupted".into())),
                c => line.push(c as char),
            }
        }
        eprintln!();
    } else {
        std::io::stdin()
            .read_line(&mut line)
            .map_err(CliError::io("reading stdin"))?;
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// `berth login`: verifies credentials with the daemon (`POST /auth`) and stores them.
pub async fn login(c: &Client, a: LoginArgs) -> CmdResult {
    let server = a.server.unwrap_or_else(|| auth::DOCKER_HUB.to_owned());
    let user = match a.username {
        Some(u) => u,
        None => prompt("Username: ", false)?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(CliError::io("reading stdin"))?;
        s.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        match a.password {
            Some(p) => {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
                p
            }
            None => prompt("Password: ", true)?,
        }
    };
    if user.is_empty() || password.is_empty() {
        return Err(CliError::Usage("username and password are required".into()));
    }
    let body =
        json!({"username": user, "password": password, "serveraddress": auth::server_key(&server)});
    let r = c.post("/auth", Some(&body)).await?;
    auth::store(&auth::config_path(), &server, &user, &password)?;
    let status = r["Status"].as_str().unwrap_or("Login Succeeded");
    println!("{status}");
    Ok(0)
}

/// `logout` flags.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry server
    pub server: Option<String>,
}

/// `berth logout`: removes stored credentials.
pub fn logout(a: LogoutArgs) -> CmdResult {
    let server = a.server.unwrap_or_else(|| auth::DOCKER_HUB.to_owned());
    let key = auth::server_key(&server);
    if auth::erase(&auth::config_path(), &server)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(0)
}
