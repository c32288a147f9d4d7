//! SVG charts of a run: the spread latency CDF and the convergence timelines.

use std::path::Path;

use plotters::prelude::*;

use crate::scenarios::Outcome;

const SIZE: (u32, u32) = (800, 480);

pub fn draw(out: &Path, results: &[Outcome], nodes: usize) -> anyhow::Result<()> {
    if let Some(spread) = results.iter().find(|r| !r.latencies_ms.is_empty()) {
        cdf(&out.join("spread_cdf.svg"), &spread.latencies_ms, nodes)?;
    }
    let timelines: Vec<&Outcome> = results.iter().filter(|r| !r.timeline.is_empty()).collect();
    if !timelines.is_empty() {
        timeline(&out.join("convergence.svg"), &timelines, nodes)?;
    }
    Ok(())
}

fn cdf(path: &Path, latencies: &[f64], nodes: usize) -> anyhow::Result<()> {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = sorted.last().copied().unwrap_or(1.0).max(1.0) * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Spread: time until every node has a write (N={nodes})"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max, 0.0..1.0)?;
    chart.configure_mesh().x_desc("milliseconds").y_desc("fraction of writes").draw()?;
    let n = sorted.len() as f64;
    chart.draw_series(LineSeries::new(
        sorted.iter().enumerate().map(|(i, &ms)| (ms, (i + 1) as f64 / n)),
        &BLUE,
    ))?;
    root.present()?;
    Ok(())
}

fn timeline(path: &Path, runs: &[&Outcome], nodes: usize) -> anyhow::Result<()> {
    let max_t = runs.iter().flat_map(|r| r.timeline.iter().map(|p| p.0)).fold(0.1, f64::max) * 1.05;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Convergence: nodes on the majority digest (N={nodes})"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_t, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the trigger (join / heal / last restart)")
        .y_desc("fraction of nodes")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (r, color) in runs.iter().zip(colors.iter().cycle()) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(r.timeline.iter().copied(), color))?
            .label(r.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
