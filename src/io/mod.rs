//! Files: safetensors checkpoints ([`checkpoint`]).

pub mod checkpoint;

pub use checkpoint::{
    load_module, load_safetensors, load_safetensors_with_metadata, load_training_state,
    save_module, save_safetensors, save_training_state, SafeDType, TrainingState,
};
