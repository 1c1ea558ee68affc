// Marks how many plots the browser decoded (a screenshot test reads it from the DOM).
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-plots', imgs.length);
  document.body.setAttribute('data-plots-rendered', ok);
});
