//! Structural checks and clean-up run on a parsed PDF before pdf-extract walks it.
//!
//! pdf-extract recurses without bounds in two places: `/Parent` chains when it looks up inherited page
//! attributes, and form XObjects drawn with `Do`. A crafted file with a loop there would overflow the stack,
//! which aborts the process (it cannot be caught like a panic). So the page tree is walked here
//! iteratively with a visited set, and form XObjects that close a cycle or nest too deep are emptied.
//! Image XObjects are emptied too: pdf-extract would otherwise decompress and parse every image as if it
//! were a content stream, which is slow and can panic; OCR renders pages from the original bytes anyway.

use std::collections::{HashMap, HashSet};

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::extract::ExtractError;

/// Deepest page tree accepted (real files have a handful of levels).
const MAX_PAGE_TREE_DEPTH: usize = 64;
/// Deepest nesting of form XObjects kept; deeper forms are emptied.
const MAX_FORM_DEPTH: usize = 32;
/// Most (form, resources) pairs examined, so a crafted graph cannot make the check itself explode.
const MAX_FORM_NODES: usize = 200_000;

/// Walks the page tree from the catalog and returns the page object ids in order.
///
/// Fails with [`ExtractError::Corrupt`] when the tree has no root, loops (a `/Kids` entry pointing
/// back to an ancestor or repeating a node), is absurdly deep, or a page's `/Parent` chain loops.
pub fn page_ids(doc: &Document) -> Result<Vec<ObjectId>, ExtractError> {
    let root = doc
        .catalog()
        .and_then(|cat| cat.get(b"Pages"))
        .and_then(Object::as_reference)
        .map_err(|e| corrupt(format!("the document has no page tree: {e}")))?;

    let mut pages = Vec::new();
    let mut seen = HashSet::from([root]);
    // Stack of kid lists still to visit, innermost last.
    let mut stack: Vec<std::slice::Iter<'_, Object>> = vec![kids(doc, root)?.iter()];
    while let Some(iter) = stack.last_mut() {
        let Some(kid) = iter.next() else {
            stack.pop();
            continue;
        };
        let Ok(id) = kid.as_reference() else {
            continue; // A direct object is not a valid kid; skip it as viewers do.
        };
        if !seen.insert(id) {
            return Err(corrupt(format!(
                "the page tree loops back to object {} {}",
                id.0, id.1
            )));
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue; // A missing or non-dictionary kid: viewers skip it too.
        };
        if node.get(b"Kids").is_ok() && node.get_type().map_or(true, |t| t != b"Page") {
            if stack.len() >= MAX_PAGE_TREE_DEPTH {
                return Err(corrupt("the page tree is nested too deeply".into()));
            }
            stack.push(kids(doc, id)?.iter());
        } else if node.get_type().is_ok_and(|t| t == b"Page") {
            check_parent_chain(doc, node)?;
            pages.push(id);
        }
    }
    Ok(pages)
}

/// Empties image XObjects and any form XObject that would make `Do` recurse forever or too deep.
/// Returns how many forms were emptied.
pub fn sanitize(doc: &mut Document, pages: &[ObjectId]) -> Result<usize, ExtractError> {
    let images: Vec<ObjectId> = doc
        .objects
        .iter()
        .filter(|(_, obj)| {
            obj.as_stream().is_ok_and(|s| {
                s.dict
                    .get(b"Subtype")
                    .and_then(Object::as_name)
                    .is_ok_and(|n| n == b"Image")
            })
        })
        .map(|(id, _)| *id)
        .collect();
    let bad_forms = forms_to_empty(doc, pages)?;
    for id in images.iter().chain(bad_forms.iter()) {
        if let Some(Object::Stream(stream)) = doc.objects.get_mut(id) {
            stream.dict.remove(b"Filter");
            stream.dict.remove(b"DecodeParms");
            stream.set_content(Vec::new());
        }
    }
    Ok(bad_forms.len())
}

/// Finds the form XObjects to empty with an iterative depth-first search over (form, resources) pairs,
/// mirroring pdf-extract: a form without its own `/Resources` uses the resources it was drawn with.
fn forms_to_empty(doc: &Document, pages: &[ObjectId]) -> Result<HashSet<ObjectId>, ExtractError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        OnStack,
        Done,
    }
    /// A resources dictionary is identified by its address; all are borrowed from `doc` for the walk.
    type Node = (ObjectId, usize);
    /// A node being expanded (`None` for the page itself) and its children not yet visited.
    type Frame<'a> = (Option<Node>, std::vec::IntoIter<(ObjectId, &'a Dictionary)>);

    let mut bad = HashSet::new();
    let mut state: HashMap<Node, State> = HashMap::new();
    for &page in pages {
        let Some(resources) = page_resources(doc, page) else {
            continue;
        };
        let mut stack: Vec<Frame<'_>> = vec![(None, form_children(doc, resources).into_iter())];
        while let Some((node, children)) = stack.last_mut() {
            let node = *node;
            let Some((child, inherited)) = children.next() else {
                if let Some(node) = node {
                    state.insert(node, State::Done);
                }
                stack.pop();
                continue;
            };
            let own = form_resources(doc, child).unwrap_or(inherited);
            let key = (child, std::ptr::from_ref(own) as usize);
            match state.get(&key) {
                Some(State::OnStack) => {
                    bad.insert(child);
                }
                Some(State::Done) => {}
                None if stack.len() > MAX_FORM_DEPTH => {
                    bad.insert(child);
                }
                None => {
                    if state.len() >= MAX_FORM_NODES {
                        return Err(corrupt("the PDF has too many nested form XObjects".into()));
                    }
                    state.insert(key, State::OnStack);
                    stack.push((Some(key), form_children(doc, own).into_iter()));
                }
            }
        }
    }
    Ok(bad)
}

/// The form XObjects named in a resources dictionary, each with that dictionary (what it inherits).
fn form_children<'a>(
    doc: &'a Document,
    resources: &'a Dictionary,
) -> Vec<(ObjectId, &'a Dictionary)> {
    let Some(xobjects) = deref_dict(doc, resources.get(b"XObject").ok()) else {
        return Vec::new();
    };
    xobjects
        .iter()
        .filter_map(|(_, obj)| obj.as_reference().ok())
        .filter(|id| {
            doc.get_object(*id)
                .and_then(Object::as_stream)
                .is_ok_and(|s| {
                    s.dict
                        .get(b"Subtype")
                        .and_then(Object::as_name)
                        .is_ok_and(|n| n == b"Form")
                })
        })
        .map(|id| (id, resources))
        .collect()
}

/// A form XObject's own `/Resources`, if it has any.
fn form_resources(doc: &Document, form: ObjectId) -> Option<&Dictionary> {
    let stream = doc.get_object(form).and_then(Object::as_stream).ok()?;
    deref_dict(doc, stream.dict.get(b"Resources").ok())
}

/// A page's resources, inherited from the nearest ancestor that has them (chain already checked).
fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut node = doc.get_dictionary(page).ok()?;
    for _ in 0..MAX_PAGE_TREE_DEPTH {
        if let Some(res) = deref_dict(doc, node.get(b"Resources").ok()) {
            return Some(res);
        }
        let parent = node.get(b"Parent").and_then(Object::as_reference).ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// Follows a (possibly indirect) object to a dictionary.
fn deref_dict<'a>(doc: &'a Document, obj: Option<&'a Object>) -> Option<&'a Dictionary> {
    let (_, obj) = doc.dereference(obj?).ok()?;
    obj.as_dict().ok()
}

/// The `/Kids` array of a page tree node.
fn kids(doc: &Document, id: ObjectId) -> Result<&[Object], ExtractError> {
    doc.get_dictionary(id)
        .and_then(|node| node.get_deref(b"Kids", doc))
        .and_then(Object::as_array)
        .map(Vec::as_slice)
        .map_err(|e| {
            corrupt(format!(
                "page tree node {} {} has no /Kids: {e}",
                id.0, id.1
            ))
        })
}

/// Fails when following `/Parent` from a page revisits a node or goes too deep.
fn check_parent_chain(doc: &Document, page: &Dictionary) -> Result<(), ExtractError> {
    let mut seen = HashSet::new();
    let mut node = page;
    while let Ok(parent) = node.get(b"Parent").and_then(Object::as_reference) {
        if !seen.insert(parent) || seen.len() > MAX_PAGE_TREE_DEPTH {
            return Err(corrupt("a page's /Parent chain loops".into()));
        }
        let Ok(next) = doc.get_dictionary(parent) else {
            break;
        };
        node = next;
    }
    Ok(())
}

fn corrupt(msg: String) -> ExtractError {
    ExtractError::Corrupt(msg)
}
