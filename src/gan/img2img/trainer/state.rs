//! Exact save and resume of an [`Img2ImgTrainer`]: every tensor of the training state
//! (networks, optimizers, pools) and the counters beside them.

use super::Img2ImgTrainer;
use crate::data::{BatchState, Batches};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::gan::img2img::nets::Network;
use crate::gan::img2img::Img2ImgConfig;
use crate::io::checkpoint::{load_training_state, save_training_state};
use crate::nn::{load_state_dict, Module};
use crate::optim::{Adam, Optimizer};
use crate::tensor::Tensor;
use serde_json::{json, Value};

impl Img2ImgTrainer {
    /// Every tensor of the training state.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut v = Vec::new();
        let mut add = |prefix: &str, m: &dyn Module| {
            v.extend(
                m.state_entries()
                    .into_iter()
                    .map(|(n, t)| (format!("{prefix}.{n}"), t)),
            )
        };
        let cyc = self.g_b.is_some();
        add(if cyc { "G_A" } else { "G" }, self.g_a.module.as_ref());
        add(if cyc { "D_A" } else { "D" }, self.d_a.as_ref());
        if let (Some(g), Some(d)) = (&self.g_b, &self.d_b) {
            add("G_B", g.module.as_ref());
            add("D_B", d.as_ref());
        }
        for (p, o) in [("opt_G", &self.opt_g), ("opt_D", &self.opt_d)] {
            v.extend(o.state().into_iter().map(|(n, t)| (format!("{p}.{n}"), t)));
        }
        let ([ca, h, w], [cb, ..]) = self.data.shapes();
        for (p, pool, c) in [("pool_A", &self.pool_a, ca), ("pool_B", &self.pool_b, cb)] {
            if let (Some(t), _) = pool.state(&[c, h, w])? {
                v.push((format!("{p}.images"), t));
            }
        }
        Ok(v)
    }

    /// The counters and configuration, as stored beside the tensors.
    pub fn state_json(&self) -> Value {
        let b = |s: BatchState| json!({"seed": s.seed, "epoch": s.epoch, "position": s.position});
        let opt = |o: &Adam| json!({"steps": o.steps(), "param_steps": o.param_steps()});
        let stream = |n: Option<&Network>| n.map(|n| n.dropout.get().1);
        json!({
            "kind": "img2img",
            "config": self.config.to_json(),
            "step": self.step,
            "batches_a": b(self.batches_a.state()),
            "batches_b": b(self.batches_b.state()),
            "dropout_a": stream(Some(&self.g_a)),
            "dropout_b": stream(self.g_b.as_ref()),
            "pool_a_offered": self.pool_a.offered(),
            "pool_b_offered": self.pool_b.offered(),
            "opt_G": opt(&self.opt_g),
            "opt_D": opt(&self.opt_d),
            "loss_scalers": self.loss_scalers,
        })
    }

    /// Write the whole training state to `path` (atomically).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        save_training_state(path, &self.state_tensors()?, &self.state_json().to_string())
    }

    /// Rebuild a trainer from a file written by [`Img2ImgTrainer::save`], on `device`;
    /// `steps` changes the run's total.
    pub fn load(
        path: impl AsRef<std::path::Path>,
        device: &Device,
        steps: Option<u64>,
    ) -> Result<Img2ImgTrainer> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let state = load_training_state(path)?;
        let meta: Value = serde_json::from_str(&state.metadata_json)
            .map_err(|e| Error::invalid(format!("{what}: bad training-state JSON: {e}")))?;
        let bad = |k: &str| {
            Error::invalid(format!(
                "{what}: the training state has no valid '{k}'; the checkpoint is damaged"
            ))
        };
        let mut config =
            Img2ImgConfig::from_json(meta.get("config").ok_or_else(|| bad("config"))?, &what)?;
        if let Some(s) = steps {
            config.steps = s;
        }
        let mut t = Img2ImgTrainer::new(config, device)?;
        let u = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        t.step = u(&meta, "step")?;
        if t.loss_scalers.is_some() {
            t.loss_scalers = Some(
                meta.get("loss_scalers")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .ok_or_else(|| bad("loss_scalers"))?,
            );
        }
        let (na, nb) = (t.data.train_a.len(), t.data.train_b.len());
        for (key, batches, n) in [
            ("batches_a", &mut t.batches_a, na),
            ("batches_b", &mut t.batches_b, nb),
        ] {
            let s = meta.get(key).ok_or_else(|| bad(key))?;
            let st = BatchState {
                seed: u(s, "seed")?,
                epoch: u(s, "epoch")?,
                position: u(s, "position")? as usize,
            };
            let bs = batches.batch_size();
            *batches =
                Batches::resume(n, bs, st).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        }
        for (key, net) in [("dropout_a", Some(&t.g_a)), ("dropout_b", t.g_b.as_ref())] {
            if let Some(net) = net {
                let seed = net.dropout.get().0;
                net.dropout.set(seed, u(&meta, key)?);
            }
        }
        let mut by_prefix: std::collections::HashMap<String, Vec<(String, Tensor)>> =
            Default::default();
        for (name, tensor) in state.tensors {
            let (p, rest) = name
                .split_once('.')
                .ok_or_else(|| Error::invalid(format!("{what}: unexpected tensor '{name}'")))?;
            by_prefix
                .entry(p.to_string())
                .or_default()
                .push((rest.to_string(), tensor));
        }
        let mut take = |p: &str| by_prefix.remove(p).unwrap_or_default();
        let cyc = t.g_b.is_some();
        let mut nets: Vec<(&str, &dyn Module)> = vec![
            (if cyc { "G_A" } else { "G" }, t.g_a.module.as_ref()),
            (if cyc { "D_A" } else { "D" }, t.d_a.as_ref()),
        ];
        if let (Some(g), Some(d)) = (&t.g_b, &t.d_b) {
            nets.push(("G_B", g.module.as_ref()));
            nets.push(("D_B", d.as_ref()));
        }
        for (p, net) in nets {
            load_state_dict(net, &take(p).into_iter().collect())
                .map_err(|e| Error::invalid(format!("{what}: {p}: {e}")))?;
        }
        for (key, opt) in [("opt_G", &mut t.opt_g), ("opt_D", &mut t.opt_d)] {
            let o = meta.get(key).ok_or_else(|| bad(key))?;
            let param_steps: Vec<Option<u64>> = o
                .get("param_steps")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("param_steps"))?
                .iter()
                .map(Value::as_u64)
                .collect();
            opt.load_state(&take(key), &param_steps, u(o, "steps")?)
                .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        }
        for (p, key, pool) in [
            ("pool_A", "pool_a_offered", &mut t.pool_a),
            ("pool_B", "pool_b_offered", &mut t.pool_b),
        ] {
            let images = take(p).into_iter().find(|(n, _)| n == "images");
            pool.restore(images.as_ref().map(|(_, t)| t), u(&meta, key)?)
                .map_err(|e| Error::invalid(format!("{what}: {p}: {e}")))?;
        }
        if let Some(p) = by_prefix.keys().next() {
            return Err(Error::invalid(format!(
                "{what}: unexpected tensors under '{p}.'; the checkpoint is not from this model"
            )));
        }
        Ok(t)
    }
}
