// Shows this gateway's own address in the examples of the landing page.
for (const el of document.querySelectorAll('.origin')) el.textContent = location.origin;
