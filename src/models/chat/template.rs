//! The chat template of a GGUF model (`tokenizer.chat_template`, Jinja), rendered with minijinja. Models
//! without one get ChatML, the format of both shipped models.

use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;

use super::{ChatMessage, Role};

/// Name of the one template in the environment.
const TEMPLATE_NAME: &str = "chat";
/// ChatML, used when the GGUF has no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(pub String);

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// The role's name in chat templates.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

impl ChatTemplate {
    /// Compiles `source` (or ChatML when `None`); `bos_token`/`eos_token` are the texts templates may use.
    pub fn new(
        source: Option<&str>,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.unwrap_or(CHATML).to_owned())
            .map_err(|e| TemplateError(e.to_string()))?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
        })
    }

    /// The prompt text for `messages`, ending with the opening of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        let messages: Vec<TemplateMessage<'_>> = messages
            .iter()
            .map(|m| TemplateMessage {
                role: role_name(m.role),
                content: &m.content,
            })
            .collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError(e.to_string()))?;
        template
            .render(context! {
                messages => minijinja::value::Serde(&messages),
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TemplateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.to_owned(),
        }
    }

    #[test]
    fn chatml_fallback_renders_the_generation_prompt() {
        let t = ChatTemplate::new(None, String::new(), "<|im_end|>".into()).unwrap();
        let text = t
            .render(&[msg(Role::System, "Be brief."), msg(Role::User, "Hi")])
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new(
            Some("{{ raise_exception('no system role') }}"),
            String::new(),
            String::new(),
        )
        .unwrap();
        let err = t.render(&[msg(Role::User, "x")]).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }
}
