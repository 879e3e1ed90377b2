//! The pure parts of a health check: judging a response, reading `PORT`, choosing spare ports.

use serde_json::Value;

/// Longest piece of a response quoted in a message.
const MAX_QUOTE: usize = 80;

/// One check: `GET <path>` must answer `expect`, and its JSON body must contain `json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The request path, starting with `/`.
    pub path: String,
    /// The expected status.
    pub expect: u16,
    /// Fields the JSON body must hold (recursively: objects may have more fields).
    pub json: Option<serde_json::Map<String, Value>>,
}

/// Why a response does not pass `check`, or `Ok` when it does. The reason quotes at most a few
/// short field values, never the whole body.
pub fn evaluate(check: &Check, status: u16, body: &[u8]) -> Result<(), String> {
    if status != check.expect {
        return Err(format!("status {status} (expected {})", check.expect));
    }
    let Some(expected) = &check.json else {
        return Ok(());
    };
    let actual: Value = serde_json::from_slice(body)
        .map_err(|_| format!("status {status}, but the body is not JSON"))?;
    for (key, want) in expected {
        match actual.get(key) {
            Some(got) if contains(got, want) => {}
            Some(got) => {
                return Err(format!(
                    "status {status}, but `{key}` is {} (expected {})",
                    quote(got),
                    quote(want)
                ));
            }
            None => return Err(format!("status {status}, but the body has no `{key}`")),
        }
    }
    Ok(())
}

/// True when `got` holds `want`: equal values, or for objects every field of `want` held by the
/// same field of `got`.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        _ => got == want,
    }
}

fn quote(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= MAX_QUOTE {
        return text;
    }
    let mut end = MAX_QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A `PORT` value from a `.env`: a whole number 1-65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    let v = value.trim();
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("PORT `{v}` is not a port number (1-65535)")),
    }
}

/// The spare port of each service (its live port + `offset`), checked: in range, and never a
/// live port of any service or another candidate's spare port.
pub fn spare_ports(live: &[(String, u16)], offset: u16) -> Result<Vec<u16>, String> {
    let mut spare = Vec::new();
    for (svc, port) in live {
        let p = u32::from(*port) + u32::from(offset);
        let p = u16::try_from(p).map_err(|_| {
            format!("{svc}: PORT {port} + port_offset {offset} is above 65535; lower port_offset")
        })?;
        if let Some((other, _)) = live.iter().find(|(_, lp)| *lp == p) {
            return Err(format!(
                "{svc}: the spare port {p} (PORT {port} + port_offset {offset}) is the live port \
                 of {other}; choose another port_offset"
            ));
        }
        if let Some(i) = spare.iter().position(|s| *s == p) {
            return Err(format!(
                "{svc}: the spare port {p} is also the spare port of {}; the services' PORTs \
                 repeat, check their .env files",
                live[i].0
            ));
        }
        spare.push(p);
    }
    Ok(spare)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expect: u16, json: Option<Value>) -> Check {
        Check {
            path: "/health".into(),
            expect,
            json: json.map(|v| v.as_object().unwrap().clone()),
        }
    }

    #[test]
    fn responses_are_judged() {
        let ok_body =
            br#"{"status":"ok","db":"ok","features":{"reviews":true,"x":1},"secret":"hunter2"}"#;
        for (check, status, body, want) in [
            (check(200, None), 200, &b"anything"[..], Ok(())),
            (
                check(200, None),
                503,
                &b""[..],
                Err("status 503 (expected 200)"),
            ),
            (check(404, None), 404, &b""[..], Ok(())),
            (
                check(200, Some(json!({"status": "ok"}))),
                200,
                &ok_body[..],
                Ok(()),
            ),
            (
                check(200, Some(json!({"features": {"reviews": true}}))),
                200,
                &ok_body[..],
                Ok(()),
            ),
            (
                check(200, Some(json!({"features": {"reviews": false}}))),
                200,
                &ok_body[..],
                Err(
                    "status 200, but `features` is {\"reviews\":true,\"x\":1} (expected {\"reviews\":false})",
                ),
            ),
            (
                check(200, Some(json!({"status": "ok"}))),
                200,
                &br#"{"status":"error"}"#[..],
                Err("status 200, but `status` is \"error\" (expected \"ok\")"),
            ),
            (
                check(200, Some(json!({"status": "ok"}))),
                200,
                &br#"{"state":"ok"}"#[..],
                Err("status 200, but the body has no `status`"),
            ),
            (
                check(200, Some(json!({"status": "ok"}))),
                200,
                &b"<html>"[..],
                Err("status 200, but the body is not JSON"),
            ),
        ] {
            assert_eq!(
                evaluate(&check, status, body),
                want.map_err(str::to_string),
                "{check:?} {status}"
            );
        }
        let long = format!(r#"{{"status":"{}"}}"#, "x".repeat(500));
        let err = evaluate(
            &check(200, Some(json!({"status": "ok"}))),
            200,
            long.as_bytes(),
        )
        .unwrap_err();
        assert!(err.len() < 200 && err.contains('…'), "{err}");
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("47200"), Ok(47200));
        assert_eq!(parse_port(" 80 "), Ok(80));
        for bad in ["", "0", "65536", "-1", "80a", "8 0"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        let live = |ports: &[u16]| -> Vec<(String, u16)> {
            ["backend", "admin", "store"]
                .iter()
                .zip(ports)
                .map(|(s, p)| (s.to_string(), *p))
                .collect()
        };
        assert_eq!(
            spare_ports(&live(&[47200, 47201, 47202]), 1000),
            Ok(vec![48200, 48201, 48202])
        );
        let err = spare_ports(&live(&[47200, 48200, 47202]), 1000).unwrap_err();
        assert!(err.contains("live port of admin"), "{err}");
        let err = spare_ports(&live(&[65000]), 1000).unwrap_err();
        assert!(err.contains("above 65535"), "{err}");
        let err = spare_ports(&live(&[47200, 47200]), 1000).unwrap_err();
        assert!(err.contains("also the spare port of backend"), "{err}");
    }
}
