//! Files: atomic writes ([`atomic`]), safetensors checkpoints ([`checkpoint`]), sample-grid PNGs ([`image`]), loss plots
//! ([`plot`]), the JSON Lines metrics log ([`metrics`]) and the progress line ([`progress`]).

pub mod atomic;
pub mod checkpoint;

pub use checkpoint::{
    load_module, load_safetensors, load_safetensors_with_metadata, load_training_state,
    save_module, save_safetensors, save_training_state, SafeDType, TrainingState,
};
pub mod image;
pub mod metrics;
pub mod plot;
pub mod progress;
