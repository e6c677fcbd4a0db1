//! The element-wise activations of the MLP.

/// Element-wise activation of the MLP, by its transformers name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation GPT-2 uses.
    GeluNew,
    /// `gelu`: the exact erf form.
    Gelu,
    Relu,
    /// `silu` / `swish`.
    Silu,
    Tanh,
}

impl Activation {
    /// The `activation_function` name transformers uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::GeluNew => "gelu_new",
            Activation::Gelu => "gelu",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
        }
    }
}
