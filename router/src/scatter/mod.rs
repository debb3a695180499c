//! Scatter-gather planning (being written).
