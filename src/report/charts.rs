//! The report's charts, drawn by plotters into SVG strings (inline in the
//! page: no script, no network, no fonts needed).

use plotters::prelude::*;

/// Series colours: run A, run B.
pub const COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];

/// One series of an interval chart: per row (mean, low, high).
pub struct IntervalSeries<'a> {
    pub label: &'a str,
    pub rows: Vec<Option<(f64, f64, f64)>>,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// Points with 95% intervals, one row per category, x in [0, 1]
/// (accuracy per task, one colour per run).
pub fn intervals(
    title: &str,
    categories: &[String],
    series: &[IntervalSeries],
) -> Result<String, String> {
    let mut svg = String::new();
    let n = categories.len().max(1);
    let height = 90 + 34 * n as u32 * series.len().max(1) as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let label_width = categories.iter().map(|c| c.len()).max().unwrap_or(4) as u32 * 7 + 16;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(label_width.min(260))
            .build_cartesian_2d(0.0f64..1.0f64, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .x_desc("accuracy (95% interval)")
            .y_labels(n)
            .x_labels(11)
            .light_line_style(RGBColor(238, 238, 238))
            // Row i is drawn at y = n - 1 - i (the first task on top).
            .y_label_formatter(&move |y: &f64| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                    cats[cats.len() - 1 - i as usize].clone()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()
            .map_err(err)?;
        let k = series.len().max(1) as f64;
        for (si, s) in series.iter().enumerate() {
            let color = COLORS[si % COLORS.len()];
            // Rows run top to bottom; series sit side by side in a row.
            let y_of = |row: usize| (n - 1 - row) as f64 + 0.25 - 0.5 * (si as f64 + 0.5) / k;
            let points: Vec<(usize, (f64, f64, f64))> = s
                .rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|r| (i, r)))
                .collect();
            chart
                .draw_series(points.iter().map(|&(i, (_, lo, hi))| {
                    PathElement::new(vec![(lo, y_of(i)), (hi, y_of(i))], color.stroke_width(3))
                }))
                .map_err(err)?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(i, (m, _, _))| Circle::new((m, y_of(i)), 5, color.filled())),
                )
                .map_err(err)?
                .label(s.label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Equal-width bins over [min, max]: (left edges, width, counts).
pub fn bins(values: &[f64], n: usize) -> (Vec<f64>, f64, Vec<u32>) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (Vec::new(), 1.0, Vec::new());
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = if hi > lo { (hi - lo) / n as f64 } else { 1.0 };
    let n = if hi > lo { n } else { 1 };
    let mut counts = vec![0u32; n];
    for v in finite {
        let i = (((v - lo) / width) as usize).min(n - 1);
        counts[i] += 1;
    }
    (
        (0..n).map(|i| lo + width * i as f64).collect(),
        width,
        counts,
    )
}

/// How a histogram bins its values.
#[derive(Clone, Copy)]
pub enum Binning {
    /// This many equal bins over [min, max].
    Equal(usize),
    /// One bin per integer 0, 1, ..., max (token positions).
    Integers,
}

/// A histogram of one or two series (overlaid, translucent).
pub fn histogram(
    title: &str,
    x_desc: &str,
    series: &[(&str, &[f64])],
    binning: Binning,
) -> Result<String, String> {
    let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let (edges, width) = match binning {
        Binning::Equal(n) => {
            let (e, w, _) = bins(&all, n);
            (e, w)
        }
        Binning::Integers => {
            let top = all
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max);
            ((0..=top as usize).map(|i| i as f64).collect(), 1.0)
        }
    };
    let lo = edges.first().copied().unwrap_or(0.0);
    let hi = lo + width * edges.len().max(1) as f64;
    let per: Vec<Vec<u32>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u32; edges.len()];
            for &x in v.iter().filter(|x| x.is_finite()) {
                let i = (((x - lo) / width) as usize).min(edges.len().saturating_sub(1));
                if let Some(slot) = c.get_mut(i) {
                    *slot += 1;
                }
            }
            c
        })
        .collect();
    let top = per.iter().flatten().copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(lo..hi, 0u32..top + top / 10 + 1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .disable_x_mesh()
            .draw()
            .map_err(err)?;
        for (si, ((label, _), counts)) in series.iter().zip(&per).enumerate() {
            let color = COLORS[si % COLORS.len()];
            let alpha = if series.len() > 1 { 0.55 } else { 0.85 };
            chart
                .draw_series(
                    edges
                        .iter()
                        .zip(counts)
                        .filter(|(_, &c)| c > 0)
                        .map(|(&x0, &c)| {
                            Rectangle::new([(x0, 0), (x0 + width, c)], color.mix(alpha).filled())
                        }),
                )
                .map_err(err)?
                .label(*label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_value() {
        let (edges, w, c) = bins(&[0.0, 1.0, 2.0, 10.0, f64::NAN], 5);
        assert_eq!(edges.len(), 5);
        assert_eq!(w, 2.0);
        assert_eq!(c, vec![2, 1, 0, 0, 1]);
        let (_, _, one) = bins(&[3.0, 3.0], 5);
        assert_eq!(one, vec![2]);
    }

    #[test]
    fn charts_are_svg() {
        let s = intervals(
            "accuracy",
            &["a".into(), "b".into()],
            &[IntervalSeries {
                label: "A",
                rows: vec![Some((0.5, 0.2, 0.8)), None],
            }],
        )
        .unwrap();
        assert!(s.starts_with("<svg") && s.contains("<circle"), "{s}");
        let h = histogram(
            "ttft",
            "ms",
            &[("A", &[1.0, 2.0, 2.5]), ("B", &[3.0])],
            Binning::Equal(10),
        )
        .unwrap();
        assert!(h.contains("<rect"));
        let h = histogram(
            "pos",
            "token",
            &[("A", &[0.0, 4.0, 4.0])],
            Binning::Integers,
        )
        .unwrap();
        assert!(h.contains("<rect"));
    }
}
