//! Sentiment of interaction text with VADER, a lexicon- and rule-based analyser tuned
//! for short social and support text: the compound score in [-1, 1].

use std::sync::LazyLock;

use vader_sentiment::SentimentIntensityAnalyzer;

// The analyser only borrows the crate's static lexicons, so one shared instance is
// enough for every thread.
static ANALYSER: LazyLock<SentimentIntensityAnalyzer<'static>> =
    LazyLock::new(SentimentIntensityAnalyzer::new);

/// The VADER compound score of `text`, clamped to [-1, 1] (0 for text with no
/// sentiment-bearing word).
pub fn compound(text: &str) -> f64 {
    let scores = ANALYSER.polarity_scores(text);
    let c = scores.get("compound").copied().unwrap_or(0.0);
    if c.is_finite() {
        c.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polarity() {
        assert!(compound("The export is broken again and we are very frustrated") < -0.3);
        assert!(compound("Great call, the team loves the new dashboard!") > 0.5);
        assert_eq!(compound("the meeting is on tuesday"), 0.0);
    }
}
