//! Prepaid return labels as PDF files: one 4 × 6 inch page in Helvetica, written object
//! by object (catalogue, pages, page, font, content stream) with a cross-reference table
//! whose offsets are counted as the file is written.

use crate::db::ReturnRecord;

pub const STORE_NAME: &str = "Errand Demo Store";
/// Where returned parcels go.
pub const RETURN_ADDRESS: [&str; 3] = [
    "Errand Demo Store Returns",
    "100 Warehouse Way",
    "Reno, NV 89501",
];

/// The most item lines a label lists; more are summed up in one line.
const MAX_ITEM_LINES: usize = 8;

/// The text of a return's label, line by line: the store, the return and order ids,
/// the items, where the parcel comes from (`from`, the order's address) and where it
/// goes.
pub fn label_lines(record: &ReturnRecord, from: &[String]) -> Vec<(u8, String)> {
    let catalogue = crate::catalogue::Catalogue::get();
    let mut text = vec![
        (16, STORE_NAME.to_string()),
        (12, "Prepaid return label".to_string()),
        (10, String::new()),
        (12, format!("Return {}", record.id)),
        (12, format!("Order {}", record.order_id)),
        (10, String::new()),
        (10, "Items:".to_string()),
    ];
    for line in record.lines.iter().take(MAX_ITEM_LINES) {
        let title = catalogue
            .product(&line.product_id)
            .map(|p| p.title.as_str())
            .unwrap_or("");
        let title: String = title.chars().take(34).collect();
        text.push((10, format!("  {} x {}  {}", line.quantity, line.sku, title)));
    }
    if record.lines.len() > MAX_ITEM_LINES {
        text.push((
            10,
            format!("  and {} more lines", record.lines.len() - MAX_ITEM_LINES),
        ));
    }
    if !from.is_empty() {
        text.push((10, String::new()));
        text.push((10, "From:".to_string()));
        text.extend(from.iter().map(|l| (10, format!("  {l}"))));
    }
    text.push((10, String::new()));
    text.push((12, "Ship to:".to_string()));
    text.extend(RETURN_ADDRESS.iter().map(|l| (12, format!("  {l}"))));
    text.push((10, String::new()));
    text.push((18, format!("*{}*", record.id)));
    text
}

/// An order's shipping address as the lines of a label.
pub fn address_lines(address: &serde_json::Value) -> Vec<String> {
    let field = |name: &str| {
        address
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .unwrap_or("")
    };
    let join = |parts: &[&str]| {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let city = match field("city") {
        "" => String::new(),
        city => format!("{city},"),
    };
    let country = match field("country") {
        "" | "US" | "us" => "",
        other => other,
    };
    [
        join(&[field("first_name"), field("last_name")]),
        field("address_line1").to_string(),
        field("address_line2").to_string(),
        join(&[&city, field("state"), field("postal_code")]),
        country.to_string(),
    ]
    .into_iter()
    .filter(|l| !l.is_empty())
    .collect()
}

/// A string for a PDF literal: printable ASCII, with `\`, `(` and `)` escaped; other
/// characters become `?` (Helvetica's standard encoding is not Unicode).
fn pdf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('(');
    for c in text.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// A one-page PDF showing `lines` (font size, text) from the top of a 4 × 6 inch page.
pub fn pdf(lines: &[(u8, String)]) -> Vec<u8> {
    const WIDTH: u32 = 288;
    const HEIGHT: u32 = 432;
    let mut content = String::from("BT\n");
    let mut y = HEIGHT as i64 - 36;
    for (size, text) in lines {
        y -= i64::from(*size) + 4;
        content.push_str(&format!(
            "/F1 {size} Tf 1 0 0 1 24 {y} Tm {} Tj\n",
            pdf_string(text)
        ));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] \
             /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
    ];
    // A binary comment after the header tells tools the file is not plain text.
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (n, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", n + 1).as_bytes());
    }
    let xref = out.len();
    // Each entry is exactly 20 bytes, ending in space and newline.
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        table.push_str(&format!("{offset:010} 00000 n \n"));
    }
    table.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.extend_from_slice(table.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_ascii() {
        assert_eq!(pdf_string(r"a(b)\c"), r"(a\(b\)\\c)");
        assert_eq!(pdf_string("café"), "(caf?)");
    }

    #[test]
    fn the_cross_reference_table_points_at_the_objects() {
        let bytes = pdf(&[(12, "Return RT-1".into()), (10, "(x)".into())]);
        assert!(bytes.starts_with(b"%PDF-1.4\n"));
        assert!(bytes.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(bytes[startxref..].starts_with(b"xref\n0 6\n"));
        let table = &bytes[startxref..];
        let entries: Vec<&[u8]> = table[b"xref\n0 6\n".len()..].chunks(20).take(6).collect();
        assert_eq!(entries[0], b"0000000000 65535 f \n");
        for (n, entry) in entries.iter().enumerate().skip(1) {
            let offset: usize = std::str::from_utf8(&entry[..10]).unwrap().parse().unwrap();
            assert!(bytes[offset..].starts_with(format!("{n} 0 obj\n").as_bytes()));
        }
        assert!(text.contains("(Return RT-1) Tj"));
        let length: usize = text
            .split("/Length ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let stream = text.find("stream\n").unwrap() + "stream\n".len();
        assert!(text[stream + length..].starts_with("endstream"));
    }
}
