use serde::{Deserialize, Deserializer};

/// A duration written as text in the file: `500ms`, `15s`, `2m`, `1h`,
/// `90d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses `<integer><unit>` with unit ms, s, m, h or d.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h or d)"))?;
        let (num, unit) = text.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("duration {text:?} must start with a whole number"))?;
        let d = match unit {
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
            "h" => std::time::Duration::from_secs(n.saturating_mul(3600)),
            "d" => std::time::Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "duration {text:?} has unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        Ok(Duration(d))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}
