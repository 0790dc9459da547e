//! The image-to-image networks against PyTorch twins with the reference implementation's
//! module structure (tests/data/pytorch/img2img_nets.json, written by
//! scripts/pytorch_reference/img2img_nets.py): the state_dict names and shapes in order, the
//! output shape for the recorded input, and for the PatchGAN (batch norm, eval mode: a local
//! network) the receptive field of one output, measured here the same way as there — the
//! extent of the input pixels with a nonzero gradient of the centre output.

use duel::gan::img2img::nets::{patchgan, resnet, unet, Norm, PatchSpec, ResnetSpec, UnetSpec};
use duel::nn::{Module, ParamRng};
use duel::{DType, Device, Tensor};
use serde_json::Value;

mod pytorch_fixture;
use pytorch_fixture::{dims, load};

fn norm(v: &Value) -> Norm {
    Norm::parse(v.as_str().unwrap()).unwrap()
}

fn build(case: &Value) -> Box<dyn Module> {
    let p = &case["params"];
    let u = |k: &str| p[k].as_u64().unwrap() as usize;
    let input = dims(&case["input_shape"]);
    let side = (input[2], input[3]);
    let mut rng = ParamRng::new(3);
    let dev = &Device::Cpu;
    match case["kind"].as_str().unwrap() {
        "unet" => {
            let spec = UnetSpec {
                in_ch: u("in_ch"),
                out_ch: u("out_ch"),
                num_downs: u("num_downs"),
                ngf: u("ngf"),
                max_mult: 8,
                norm: norm(&p["norm"]),
                dropout: p["dropout"].as_bool().unwrap(),
            };
            unet(&spec, side, 5, &mut rng, dev).unwrap().module
        }
        "resnet" => {
            let spec = ResnetSpec {
                in_ch: u("in_ch"),
                out_ch: u("out_ch"),
                ngf: u("ngf"),
                n_blocks: u("n_blocks"),
                norm: norm(&p["norm"]),
                dropout: p["dropout"].as_bool().unwrap(),
            };
            resnet(&spec, side, 5, &mut rng, dev).unwrap().module
        }
        "patchgan" => {
            let spec = PatchSpec {
                in_ch: u("in_ch"),
                ndf: u("ndf"),
                n_layers: u("n_layers"),
                norm: norm(&p["norm"]),
            };
            patchgan(&spec, &mut rng, dev).unwrap()
        }
        k => panic!("unknown kind {k}"),
    }
}

#[test]
fn img2img_nets_state_dict_names_shapes_and_outputs_match_pytorch() {
    let cases = load("img2img_nets.json");
    assert_eq!(cases.len(), 22, "the fixture's cases");
    for case in &cases {
        let what = format!("{} {}", case["kind"], case["params"]);
        let mut net = build(case);
        let ours: Vec<(String, Vec<usize>)> = net
            .state_entries()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        let theirs: Vec<(String, Vec<usize>)> = case["state_dict"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_str().unwrap().to_string(), dims(&e[1])))
            .collect();
        assert_eq!(ours, theirs, "state_dict of {what}");
        net.set_training(false);
        let input = dims(&case["input_shape"]);
        let x = Tensor::zeros(input, DType::F32, &Device::Cpu).unwrap();
        let y = duel::autograd::no_grad(|| net.forward(&x)).unwrap();
        assert_eq!(y.dims(), dims(&case["output_shape"]), "output of {what}");
    }
}

#[test]
fn img2img_nets_patchgan_receptive_fields_are_16_34_70() {
    for case in load("img2img_nets.json") {
        if case["kind"] != "patchgan" || case["params"]["norm"] != "batch" {
            continue;
        }
        let n_layers = case["params"]["n_layers"].as_u64().unwrap() as usize;
        let spec = PatchSpec {
            in_ch: 2,
            ndf: 4,
            n_layers,
            norm: Norm::Batch,
        };
        let mut net = patchgan(&spec, &mut ParamRng::new(3), &Device::Cpu).unwrap();
        net.set_training(false);
        let side = 160;
        let x = Tensor::randn([1, 2, side, side], 9, 0, &Device::Cpu)
            .unwrap()
            .with_requires_grad();
        let y = net.forward(&x).unwrap();
        let (h, w) = (y.dims()[2], y.dims()[3]);
        let centre = y
            .narrow(2, h / 2, 1)
            .unwrap()
            .narrow(3, w / 2, 1)
            .unwrap()
            .sum_all()
            .unwrap();
        centre.backward().unwrap();
        let g = x.grad().unwrap().to_f64_vec().unwrap();
        let hit = |axis_y: bool| {
            let idx: Vec<usize> = (0..side)
                .filter(|&i| {
                    (0..2).any(|c| {
                        (0..side).any(|j| {
                            let (r, col) = if axis_y { (i, j) } else { (j, i) };
                            g[(c * side + r) * side + col] != 0.0
                        })
                    })
                })
                .collect();
            idx.last().unwrap() - idx[0] + 1
        };
        let measured = [hit(true), hit(false)];
        assert_eq!(measured.to_vec(), dims(&case["receptive_field"]));
        assert_eq!(measured[0], spec.receptive_field());
        assert_eq!(measured[0], [16, 34, 70][n_layers - 1]);
    }
}

#[test]
fn img2img_nets_unet_dropout_sits_in_the_inner_decoder_blocks() {
    // 5 levels, cap 4·ngf: channels 2, 4, 8, 8, 8; level 3 (8 → 8, not innermost) has the
    // dropout, after its up-convolution's norm: model.model.1.model.3.model.3.model.7.
    let spec = UnetSpec {
        in_ch: 1,
        out_ch: 1,
        num_downs: 5,
        ngf: 2,
        max_mult: 4,
        norm: Norm::Batch,
        dropout: true,
    };
    let net = unet(&spec, (32, 32), 5, &mut ParamRng::new(1), &Device::Cpu).unwrap();
    let text = net.module.describe();
    assert_eq!(text.matches("Dropout(p=0.5)").count(), 1, "{text}");
    // Dropout changes the training-mode output and its stream advances; eval mode is
    // deterministic.
    let x = Tensor::randn([2, 1, 32, 32], 4, 0, &Device::Cpu).unwrap();
    let a = net.module.forward(&x).unwrap().to_f64_vec().unwrap();
    let after_one = net.dropout.get().1;
    assert!(after_one > 0);
    let b = net.module.forward(&x).unwrap().to_f64_vec().unwrap();
    assert_ne!(a, b, "two training-mode passes drew the same dropout mask");
    // An odd side is refused with one clear message.
    let err = unet(&spec, (28, 28), 5, &mut ParamRng::new(1), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("multiples of 32"), "{err}");
}
