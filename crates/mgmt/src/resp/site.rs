//! The facts about this installation that many answers carry.

/// Facts fixed at first start that many answers need.
#[derive(Debug, Clone)]
pub struct Site {
    /// The zone's internal id.
    pub zone_id: i64,
    /// The zone's uuid.
    pub zone_uuid: String,
    /// The zone's name.
    pub zone_name: String,
}
