//! groove: the assessment plugin of vibesd (being built).
