//! `mist token`: mints a signed token (JWT) with an HMAC key, for tests and
//! as a worked example for backends: the same claims, signed with the same
//! key file the server's `--authenticator jwt://?key=PATH` reads.

use crate::{split_tags, Failure};
use argh::FromArgs;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(FromArgs)]
/// print a signed token (JWT, HS256) for a server started with
/// --authenticator jwt://?key=PATH
#[argh(subcommand, name = "token")]
pub struct Token {
    /// the HMAC secret file the server checks tokens with
    #[argh(option)]
    key: String,
    /// comma-separated tags the token may use
    #[argh(option, default = "String::new()")]
    tags: String,
    /// how long it is valid: seconds, or a number with s, m, h or d
    /// (default: 1h)
    #[argh(option, default = "String::from(\"1h\")")]
    ttl: String,
    /// make it the admin's token: every tag, and the admin's commands
    #[argh(switch)]
    admin: bool,
}

pub fn run(cmd: &Token) -> Result<(), Failure> {
    let ttl = seconds(&cmd.ttl)?;
    // The same file, read the same way, as the server's jwt://?key=PATH.
    let secret = mist_auth::read_hmac_secret(std::path::Path::new(&cmd.key))
        .map_err(|e| Failure::Usage(format!("--key: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = mist_auth::mint_hmac(&secret, &split_tags(&cmd.tags), cmd.admin, now, ttl)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    println!("{token}");
    Ok(())
}

/// `90`, `90s`, `15m`, `1h` or `7d`, in seconds.
fn seconds(ttl: &str) -> Result<u64, Failure> {
    let (number, unit) = match ttl.char_indices().last() {
        Some((i, unit)) if unit.is_ascii_alphabetic() => (&ttl[..i], unit),
        _ => (ttl, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => Ok(n.saturating_mul(scale)),
        _ => Err(Failure::Usage(format!(
            "--ttl {ttl:?}: use a positive number of seconds, or one with s, m, h or d (e.g. 1h)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn ttls_read_as_people_write_them() {
        assert_eq!(seconds("90").unwrap(), 90);
        assert_eq!(seconds("15m").unwrap(), 900);
        assert_eq!(seconds("1h").unwrap(), 3600);
        assert_eq!(seconds("2d").unwrap(), 172_800);
        for bad in ["", "0", "1y", "h", "-5"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
