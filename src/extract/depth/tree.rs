//! The tree builder's part of the estimate: the stack of open elements and
//! the rules of HTML's tree construction that decide how deep it grows.

use std::collections::HashMap;

use super::names::class::*;
use super::names::{
    breaks_out_of_foreign, classes_of, closes_in_scope, closes_p, common, is_heading, is_void,
    COMMON,
};
use super::Raw;

/// One open element.
#[derive(Clone, Copy)]
struct Open {
    /// Its name's slot.
    name: u32,
    classes: u32,
}

/// A name, and the positions of its open elements (last on top).
struct Slot {
    classes: u32,
    positions: Vec<u32>,
}

/// Names kept with no open element before they are forgotten: enough for
/// every name of real pages, few enough to bound memory on hostile ones.
const NAMES_KEPT: usize = 4096;

/// The tree builder's part: the stack of open elements, with the positions
/// of the elements of each name and class, so that every rule is a lookup
/// instead of a walk down the stack.
pub(super) struct Tree {
    open: Vec<Open>,
    by_class: [Vec<u32>; COUNT],
    /// Slots of names (a namespace byte, then the name).
    names: HashMap<Vec<u8>, u32>,
    slots: Vec<Slot>,
    /// Slots of forgotten names, to reuse.
    free: Vec<u32>,
    deepest: u32,
    key: Vec<u8>,
}

/// Names are keyed with their namespace, so that `<title>` in SVG is not
/// the HTML one.
fn key(key: &mut Vec<u8>, name: &[u8], html: bool) {
    key.clear();
    key.push(if html { b'h' } else { b'f' });
    key.extend_from_slice(&name[..name.len().min(64)]);
}

/// The positions of `classes` in `by_class`.
fn bits(classes: u32) -> impl Iterator<Item = usize> {
    (0..COUNT).filter(move |c| classes & (1 << c) != 0)
}

impl Tree {
    pub(super) fn new() -> Self {
        let mut tree = Tree {
            open: Vec::new(),
            by_class: Default::default(),
            names: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            deepest: 0,
            key: Vec::new(),
        };
        for name in COMMON {
            tree.slots.push(Slot {
                classes: classes_of(name, true),
                positions: Vec::new(),
            });
        }
        tree
    }

    fn slot(&mut self, name: &[u8], html: bool) -> u32 {
        if let Some(id) = common(name).filter(|_| html) {
            return id;
        }
        key(&mut self.key, name, html);
        if let Some(&id) = self.names.get(&self.key) {
            return id;
        }
        if self.names.len() >= NAMES_KEPT.max(2 * self.open.len()) {
            self.forget_closed_names();
        }
        let slot = Slot {
            classes: classes_of(name, html),
            positions: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                self.slots.len() as u32 - 1
            }
        };
        self.names.insert(self.key.clone(), id);
        id
    }

    /// Frees the slots of names with no open element (at least half of
    /// them, so the work is constant per name on average).
    fn forget_closed_names(&mut self) {
        let (slots, free) = (&self.slots, &mut self.free);
        self.names.retain(|_, &mut id| {
            let open = !slots[id as usize].positions.is_empty();
            if !open {
                free.push(id);
            }
            open
        });
    }

    fn push(&mut self, name: &[u8], html: bool) {
        let id = self.slot(name, html);
        let slot = &mut self.slots[id as usize];
        let at = self.open.len() as u32;
        slot.positions.push(at);
        let classes = slot.classes;
        self.open.push(Open { name: id, classes });
        for c in bits(classes) {
            self.by_class[c].push(at);
        }
        self.deepest = self.deepest.max(self.open.len() as u32);
    }

    /// Pops every element from position `at` up, `at` included.
    fn pop_to(&mut self, at: u32) {
        while self.open.len() > at as usize {
            let Some(top) = self.open.pop() else { return };
            for c in bits(top.classes) {
                self.by_class[c].pop();
            }
            self.slots[top.name as usize].positions.pop();
        }
    }

    fn pop(&mut self) {
        self.pop_to(self.top());
    }

    /// The position of the last open element of any of `classes`.
    fn last(&self, classes: u32) -> Option<u32> {
        bits(classes)
            .filter_map(|c| self.by_class[c].last().copied())
            .max()
    }

    fn last_named(&mut self, name: &[u8], html: bool) -> Option<u32> {
        let id = match common(name).filter(|_| html) {
            Some(id) => id,
            None => {
                key(&mut self.key, name, html);
                *self.names.get(&self.key)?
            }
        };
        self.slots[id as usize].positions.last().copied()
    }

    fn top_is(&self, classes: u32) -> bool {
        self.open.last().is_some_and(|o| o.classes & classes != 0)
    }

    fn top(&self) -> u32 {
        self.open.len().saturating_sub(1) as u32
    }

    /// `at`, if no element of `bounds` (or of the default scope) is open
    /// above it.
    fn scoped(&self, at: Option<u32>, bounds: u32) -> Option<u32> {
        let at = at?;
        self.last(SCOPE | bounds)
            .is_none_or(|b| at >= b)
            .then_some(at)
    }

    /// How many elements are open.
    pub(super) fn depth(&self) -> u32 {
        self.open.len() as u32
    }

    /// The most elements open at once so far.
    pub(super) fn deepest(&self) -> u32 {
        self.deepest
    }

    /// Where SVG or MathML is being parsed (not at an integration point).
    pub(super) fn in_foreign(&self) -> bool {
        self.open
            .last()
            .is_some_and(|o| o.classes & (HTML | INTEGRATION) == 0)
    }

    fn close_p(&mut self) {
        if let Some(at) = self.scoped(self.last(P), BUTTON) {
            self.pop_to(at);
        }
    }

    /// `<li>`, `<dd>`, `<dt>`: the open item closes unless a special element
    /// (other than address, div, p) is open inside it.
    fn close_item(&mut self, item: u32) {
        if let Some(at) = self.last(item).filter(|&at| self.last(STRICT) == Some(at)) {
            self.pop_to(at);
        }
    }

    /// A start tag (`closed`: written `<x/>`); says when its content is text.
    pub(super) fn start(&mut self, name: &[u8], closed: bool) -> Option<Raw> {
        if self.in_foreign() && self.foreign_start(name, closed) {
            return None;
        }
        match name {
            b"html" | b"head" | b"body" | b"frameset" => {}
            b"svg" | b"math" if !closed => self.push(name, false),
            b"svg" | b"math" => {}
            b"script" | b"style" | b"title" | b"textarea" | b"xmp" | b"iframe" | b"noembed"
            | b"noframes" | b"noscript" => {
                if name == b"xmp" {
                    self.close_p();
                }
                return Some(Raw::ToEndTag);
            }
            b"plaintext" => return Some(Raw::Rest),
            b"caption" | b"colgroup" | b"col" | b"tbody" | b"thead" | b"tfoot" | b"tr" | b"td"
            | b"th" => self.table_part(name),
            b"table" => {
                // A table directly in a table (not in a cell) closes it.
                if let Some(t) = self.last(TABLE).filter(|&t| self.last(CELL) < Some(t)) {
                    self.pop_to(t);
                }
                // In quirks mode `<table>` leaves a `<p>` open: keep it.
                self.push(name, true);
            }
            _ if is_void(name) => {
                if name == b"hr" {
                    self.close_p();
                }
            }
            _ => self.open_element(name),
        }
        None
    }

    /// A start tag in SVG or MathML: true when it stays there (and is
    /// handled); the tags of HTML's text structure end foreign content.
    fn foreign_start(&mut self, name: &[u8], closed: bool) -> bool {
        if !breaks_out_of_foreign(name) {
            if !closed {
                self.push(name, false);
            }
            return true;
        }
        while self.in_foreign() {
            self.pop();
        }
        false
    }

    /// An HTML element that is not void: it closes what its tag implies, then
    /// opens.
    fn open_element(&mut self, name: &[u8]) {
        match name {
            b"li" => {
                self.close_item(LI);
                self.close_p();
            }
            b"dd" | b"dt" => {
                self.close_item(DEF);
                self.close_p();
            }
            b"button" => {
                if let Some(at) = self.scoped(self.last(BUTTON), 0) {
                    self.pop_to(at);
                }
            }
            // An open `<a>` with nothing special inside it is closed.
            b"a" => {
                if let Some(at) = self.last(A).filter(|&at| self.last(SPECIAL) < Some(at)) {
                    self.pop_to(at);
                }
            }
            b"option" | b"optgroup" if self.top_is(OPTION) => self.pop(),
            // A second form is ignored while one is open.
            b"form" if self.last(FORM).is_some() => return,
            _ if is_heading(name) => {
                self.close_p();
                if self.top_is(HEADING) {
                    self.pop();
                }
            }
            _ if closes_p(name) || name == b"form" => self.close_p(),
            _ => {}
        }
        self.push(name, true);
    }

    /// Table structure: outside a table it is ignored; inside one it closes
    /// what is open down to its place (a cell closes the previous cell, a
    /// row the previous row) and opens the parts the markup leaves out.
    fn table_part(&mut self, name: &[u8]) {
        let Some(t) = self.last(TABLE) else { return };
        match name {
            b"caption" => {
                self.pop_to(t + 1);
                self.push(name, true);
            }
            // A colgroup holds only `<col>`s and closes at anything else.
            b"colgroup" | b"col" => self.pop_to(t + 1),
            b"tbody" | b"thead" | b"tfoot" => {
                self.pop_to(t + 1);
                self.push(name, true);
            }
            b"tr" => {
                self.open_section(t);
                self.push(name, true);
            }
            _ => {
                match self.last(ROW).filter(|&r| r > t) {
                    Some(r) => self.pop_to(r + 1),
                    None => {
                        self.open_section(t);
                        self.push(b"tr", true);
                    }
                }
                self.push(name, true);
            }
        }
    }

    /// Closes everything inside the open table section, opening a `<tbody>`
    /// when there is none.
    fn open_section(&mut self, table: u32) {
        match self.last(SECTION).filter(|&s| s > table) {
            Some(s) => self.pop_to(s + 1),
            None => {
                self.pop_to(table + 1);
                self.push(b"tbody", true);
            }
        }
    }

    /// An end tag.
    pub(super) fn end(&mut self, name: &[u8]) {
        if self.open.last().is_some_and(|o| o.classes & HTML == 0) {
            // In SVG or MathML an end tag closes the element of its name
            // above the nearest HTML element, or goes to the HTML rules.
            let html = self.last(HTML);
            if let Some(at) = self.last_named(name, false).filter(|&at| html < Some(at)) {
                self.pop_to(at);
                return;
            }
        }
        let at = match name {
            b"html" | b"head" | b"body" | b"br" | b"colgroup" | b"col" => None,
            b"p" => self.scoped(self.last(P), BUTTON),
            b"td" | b"th" | b"tr" | b"tbody" | b"thead" | b"tfoot" | b"caption" => {
                let table = self.last(TABLE);
                self.last_named(name, true).filter(|&at| table < Some(at))
            }
            b"table" => self.last(TABLE),
            b"li" => self.scoped(self.last(LI), LIST),
            b"form" => self.top_is(FORM).then(|| self.top()),
            _ if is_heading(name) => self.scoped(self.last(HEADING), 0),
            _ if closes_in_scope(name) => {
                let at = self.last_named(name, true);
                self.scoped(at, 0)
            }
            // Any other end tag closes its element, unless a special
            // element is open inside it (then it is ignored).
            _ => self
                .last_named(name, true)
                .filter(|&at| self.last(SPECIAL).is_none_or(|s| at >= s)),
        };
        if let Some(at) = at {
            self.pop_to(at);
        }
    }
}
