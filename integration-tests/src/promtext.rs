//! Histograms read from the Prometheus text format, as the security servers expose them on
//! `/metrics`: the benchmark reads each server's own view of an exchange's time (the exchange
//! latency and the message-log waits) before and after a load and reports the difference.

use std::collections::BTreeMap;

/// One histogram series: cumulative buckets (upper bound, count), sum and count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// `(le, cumulative count)`, in increasing `le`; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

/// A series' labels, without `le`.
pub type Labels = BTreeMap<String, String>;

/// Every series of histogram `family` in `text`, by labels.
pub fn histograms(text: &str, family: &str) -> BTreeMap<Labels, Histogram> {
    let mut out: BTreeMap<Labels, Histogram> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        let (kind, rest) = if let Some(r) = rest.strip_prefix("_bucket") {
            ("bucket", r)
        } else if let Some(r) = rest.strip_prefix("_sum") {
            ("sum", r)
        } else if let Some(r) = rest.strip_prefix("_count") {
            ("count", r)
        } else {
            continue;
        };
        let Some((mut labels, value)) = parse_sample(rest) else {
            continue;
        };
        let le = labels.remove("le");
        let h = out.entry(labels).or_default();
        match (kind, le) {
            ("bucket", Some(le)) => {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse() {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                h.buckets.push((bound, value));
            }
            ("sum", None) => h.sum = value,
            ("count", None) => h.count = value,
            _ => {}
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// `{a="x",b="y"} 12.5` (or ` 12.5` without labels) into labels and value.
fn parse_sample(s: &str) -> Option<(Labels, f64)> {
    let mut labels = Labels::new();
    let rest = if let Some(inner) = s.strip_prefix('{') {
        let close = inner.find('}')?;
        let mut body = &inner[..close];
        while !body.is_empty() {
            let (name, after) = body.split_once("=\"")?;
            let end = after.find('"')?;
            labels.insert(
                name.trim_start_matches(',').to_owned(),
                after[..end].to_owned(),
            );
            body = after[end + 1..].trim_start_matches(',');
        }
        &inner[close + 1..]
    } else {
        s
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((labels, value))
}

impl Histogram {
    /// What was observed after `before` was read (counters subtracted; buckets matched by
    /// bound).
    pub fn since(&self, before: Option<&Histogram>) -> Histogram {
        let Some(b) = before else {
            return self.clone();
        };
        let earlier = |le: f64| {
            b.buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, (c - earlier(le)).max(0.0)))
                .collect(),
            sum: (self.sum - b.sum).max(0.0),
            count: (self.count - b.count).max(0.0),
        }
    }

    /// The mean observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile, interpolated linearly inside its bucket (the lower bound of the `+Inf`
    /// bucket when it falls there).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * self.count;
        let (mut lo, mut below) = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= target && c > below {
                if le.is_infinite() {
                    return Some(lo);
                }
                return Some(lo + (le - lo) * (target - below) / (c - below));
            }
            (lo, below) = (if le.is_finite() { le } else { lo }, c);
        }
        Some(lo)
    }

    /// The share of observations above `bound`, which must be one of the bucket bounds.
    pub fn share_over(&self, bound: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let at = self.buckets.iter().find(|(le, _)| *le == bound)?.1;
        Some((self.count - at) / self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = r#"# HELP lat Exchange latency
# TYPE lat histogram
lat_bucket{side="consumer",le="0.001"} 0
lat_bucket{side="consumer",le="0.002"} 50
lat_bucket{side="consumer",le="0.005"} 90
lat_bucket{side="consumer",le="+Inf"} 100
lat_sum{side="consumer"} 0.3
lat_count{side="consumer"} 100
lat_bucket{side="provider",le="0.001"} 4
lat_bucket{side="provider",le="0.002"} 4
lat_bucket{side="provider",le="0.005"} 4
lat_bucket{side="provider",le="+Inf"} 4
lat_sum{side="provider"} 0.002
lat_count{side="provider"} 4
latency_other_count 7
"#;

    fn side(v: &str) -> Labels {
        [("side".to_owned(), v.to_owned())].into()
    }

    #[test]
    fn reads_every_series_of_the_family() {
        let h = histograms(TEXT, "lat");
        assert_eq!(h.len(), 2);
        let c = &h[&side("consumer")];
        assert_eq!(
            c.buckets,
            vec![
                (0.001, 0.0),
                (0.002, 50.0),
                (0.005, 90.0),
                (f64::INFINITY, 100.0)
            ]
        );
        assert_eq!((c.sum, c.count), (0.3, 100.0));
        assert_eq!(c.mean(), Some(0.003));
        // Half of the observations are at or below 2 ms: the median is that bound.
        assert_eq!(c.quantile(0.5), Some(0.002));
        // 70 of 100 lies 20/40 of the way into the (2 ms, 5 ms] bucket.
        assert!((c.quantile(0.7).unwrap() - 0.0035).abs() < 1e-12);
        // In the +Inf bucket: its lower bound.
        assert_eq!(c.quantile(0.99), Some(0.005));
        assert_eq!(c.share_over(0.002), Some(0.5));
        assert_eq!(c.share_over(0.003), None);
        let p = &h[&side("provider")];
        assert!((p.quantile(0.99).unwrap() - 0.00099).abs() < 1e-12);
        assert_eq!(p.share_over(0.001), Some(0.0));
    }

    #[test]
    fn since_subtracts_the_earlier_reading() {
        let before = histograms(TEXT, "lat");
        let after_text = TEXT
            .replace("le=\"0.002\"} 50", "le=\"0.002\"} 60")
            .replace("le=\"0.005\"} 90", "le=\"0.005\"} 110")
            .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 120")
            .replace(
                "lat_sum{side=\"consumer\"} 0.3",
                "lat_sum{side=\"consumer\"} 0.36",
            )
            .replace(
                "lat_count{side=\"consumer\"} 100",
                "lat_count{side=\"consumer\"} 120",
            );
        let after = histograms(&after_text, "lat");
        let key = side("consumer");
        let d = after[&key].since(before.get(&key));
        assert_eq!(
            d.buckets,
            vec![
                (0.001, 0.0),
                (0.002, 10.0),
                (0.005, 20.0),
                (f64::INFINITY, 20.0)
            ]
        );
        assert_eq!(d.count, 20.0);
        assert!((d.mean().unwrap() - 0.003).abs() < 1e-12);
        let unchanged = after[&side("provider")].since(before.get(&side("provider")));
        assert_eq!(unchanged.count, 0.0);
        assert_eq!(unchanged.mean(), None);
        assert_eq!(unchanged.quantile(0.5), None);
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,300}") {
            for h in histograms(&text, "lat").values() {
                let _ = (h.mean(), h.quantile(0.99), h.share_over(0.001));
            }
        }

        #[test]
        fn quantiles_never_decrease(counts in proptest::collection::vec(0u32..50, 1..8)) {
            let mut total = 0.0;
            let mut buckets = Vec::new();
            for (i, c) in counts.iter().enumerate() {
                total += f64::from(*c);
                buckets.push((0.001 * (i + 1) as f64, total));
            }
            buckets.push((f64::INFINITY, total));
            let h = Histogram { buckets, sum: total * 0.001, count: total };
            let qs: Vec<f64> = [0.1, 0.5, 0.9, 0.99, 1.0]
                .iter()
                .filter_map(|q| h.quantile(*q))
                .collect();
            prop_assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
        }
    }
}
